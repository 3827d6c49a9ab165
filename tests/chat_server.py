"""A loopback HTTP server that speaks the OpenAI chat-completions and Batch API protocols, with faults on demand.

Written on raw asyncio streams (no framework) so that it can do what real servers do under load:
answer 429 with ``Retry-After`` above a requests-per-second limit, answer 500, answer slowly,
drop the connection without a reply, and serve at most K requests at once with latency L
(capacity K/L answers per second). It counts everything at the server, so throughput is
measured where the work happens. Answers are valid CBT answers assembled from the bundled
sample's steps (or English ones), in the free-text or the structured (JSON) shape the prompt
asks for. A ``stream=True`` request gets the answer as server-sent events (chunks of 8 characters).
It runs in a background thread on 127.0.0.1 and a free port::

    with ChatServer(slots=32, latency=0.2) as server:
        server.base_url  # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SAMPLE = Path(__file__).resolve().parents[1] / "cbt_llm" / "data" / "sample" / "cbt_qa_sample.jsonl"
STEP_KEYS = ("validation", "key_thought", "challenge", "strategy", "encouragement")

EN_STEPS = {
    "validation": [
        "It sounds really hard to carry this every day, and I can understand why you feel so tired and worried. "
        "Thank you for sharing something so personal; it makes sense that this weighs on you.",
        "What you describe sounds exhausting and lonely, and it is understandable that you feel overwhelmed. "
        "Anyone in your place would find this painful.",
        "I can hear how much pressure you are under, and it makes sense that you feel frustrated and stuck. "
        "Your feelings are valid and deserve attention.",
    ],
    "key_thought": [
        "One thought that may be running in the background is \"if I fail at this, I am a failure\". "
        "That is a kind of all-or-nothing thinking, where one result decides everything.",
        "You might be telling yourself \"they all think I am useless\". "
        "This looks like mind reading: a belief about what others think, taken as fact.",
        "It seems you have reached the conclusion that \"this will never get better\". "
        "That is catastrophising, a thinking trap that jumps to the worst outcome.",
    ],
    "challenge": [
        "What evidence do you have that this thought is completely true? "
        "Is there another way to look at what happened?",
        "If a close friend told you the same thing, what would you say to them? "
        "Are there moments that do not fit this belief?",
        "Is it possible that other explanations fit the facts just as well? "
        "What would you tell someone you care about in the same situation?",
    ],
    "strategy": [
        "You could try writing down the thought each evening, and next to it list the evidence for and against it. "
        "You might also practise slow breathing for five minutes when the worry starts.",
        "One way to start is to plan one small, concrete step for each day, for example a short walk or one message "
        "to a friend. Try to keep a simple journal of what you did and how it went.",
        "Consider setting a small goal for this week and breaking it into steps. "
        "You can also schedule a fixed worry time, so the thoughts have a place and do not fill the whole day.",
    ],
    "encouragement": [
        "Change takes time, and it is fine to go step by step. I believe you can make progress, and if things feel "
        "too heavy, reaching out to a counsellor or another professional is a good way to get support.",
        "This is only a beginning, so be patient and gentle with yourself as you practise. "
        "If the distress keeps growing, a therapist can support you along the way.",
        "Little by little these small steps add up, and there is real hope here. "
        "Remember that talking to a professional counsellor is also a sign of strength.",
    ],
}


def _load_sample_steps() -> list[dict[str, str]]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["steps"] for row in rows]


_ZH_STEPS = _load_sample_steps()


def cbt_steps(seed_text: str, language: str = "zh") -> dict[str, str]:
    """Five step paragraphs picked by a hash of the prompt, so different questions get different answers."""
    h = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "big")
    if language == "en":
        return {key: EN_STEPS[key][(h >> (3 * i)) % 3] for i, key in enumerate(STEP_KEYS)}
    n = len(_ZH_STEPS)
    return {key: _ZH_STEPS[(h + 17 * i * (1 + (h >> 20) % 5)) % n][key] for i, key in enumerate(STEP_KEYS)}


def default_answer(prompt: str, body: dict, ask: int = 0) -> str:
    """A valid CBT answer for the prompt: JSON when the prompt asks for it, English for English prompts.

    ``ask`` counts earlier answers to the same prompt, so asking again gives a different answer.
    """
    language = "en" if "Question:" in prompt or "counsellor who specialises" in prompt else "zh"
    steps = cbt_steps(f"{prompt}#{ask}" if ask else prompt, language)
    response = "\n\n".join(steps[key] for key in STEP_KEYS)
    if "JSON" in prompt and "response" in prompt:
        return json.dumps({**steps, "response": response}, ensure_ascii=False)
    return response


def approx_tokens(text: str) -> int:
    return max(1, len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"[A-Za-z]+", text)))


@dataclass
class Stats:
    """What the server saw, counted at the server."""

    requests: int = 0          # chat-completion requests received
    answered: int = 0          # 200 answers
    rate_limited: int = 0      # 429s from the per-second limit
    injected_429: int = 0
    injected_500: int = 0
    dropped: int = 0
    slow: int = 0
    other_errors: int = 0
    max_in_flight: int = 0
    first_request: float | None = None
    last_answer: float | None = None
    answer_times: list = field(default_factory=list)
    prompts: collections.Counter = field(default_factory=collections.Counter)
    auth_headers: set = field(default_factory=set)
    received: list = field(default_factory=list)  # the messages of each chat request, as sent (system line included)

    @property
    def throughput(self) -> float:
        """Answers per second between the first request and the last answer."""
        if not self.answered or self.first_request is None or self.last_answer is None:
            return 0.0
        return self.answered / max(self.last_answer - self.first_request, 1e-9)


class ChatServer:
    """See the module docstring. All knobs can be changed while it runs (set the attributes)."""

    def __init__(self, *, slots: int | None = None, latency: float = 0.0, rate_limit: float | None = None,
                 rate_window: float = 1.0, p429: float = 0.0, p500: float = 0.0, pdrop: float = 0.0,
                 pslow: float = 0.0, slow_latency: float = 5.0, retry_after: float = 0.5,
                 send_retry_after_ms: bool = True, answer: Callable[..., str] | None = None,
                 status: int | None = None, models: tuple[str, ...] | None = None, seed: int = 0,
                 batch_polls: int = 2, batch_fail_ids: tuple[str, ...] = (), batch_expire_after: int | None = None):
        self.slots, self.latency = slots, latency
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.p429, self.p500, self.pdrop, self.pslow = p429, p500, pdrop, pslow
        self.slow_latency, self.retry_after, self.send_retry_after_ms = slow_latency, retry_after, send_retry_after_ms
        self.answer = answer or default_answer
        self.status = status
        self.models = models
        self.context_limit: int | None = None  # a longer prompt (characters) is answered 400 context_length_exceeded
        self.script: collections.deque[str] = collections.deque()  # e.g. ["429", "500", "drop", "slow"]
        self.batch_polls, self.batch_fail_ids = batch_polls, set(batch_fail_ids)
        self.batch_expire_after = batch_expire_after  # answer this many lines, then expire the batch
        self.random = random.Random(seed)
        self.stats = Stats()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._accepted: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set = set()
        self.port = 0

    # ----- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ChatServer":
        self._thread = threading.Thread(target=self._run, name="chat-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("chat server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown():
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset_stats(self) -> None:
        self.stats = Stats()
        self._accepted.clear()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._sem = asyncio.Semaphore(self.slots) if self.slots else None
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    # ----- HTTP ------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                method, path, headers, body = request
                result = await self._route(method, path, headers, body)
                if result is None:  # drop the connection without answering
                    writer.transport.abort()
                    return
                status, extra_headers, payload = result
                data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
                ctype = extra_headers.pop("Content-Type", None) or (
                    "application/octet-stream" if isinstance(payload, bytes) else "application/json")
                head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Type: {ctype}",
                        f"Content-Length: {len(data)}", "Connection: keep-alive"]
                head += [f"{k}: {v}" for k, v in extra_headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _read_request(self, reader):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        else:
            body = await reader.readexactly(int(headers.get("content-length", 0)))
        return method, path, headers, body

    async def _route(self, method, path, headers, body):
        path = path.split("?", 1)[0]
        if "authorization" in headers:
            self.stats.auth_headers.add(headers["authorization"])
        if self.status is not None:  # a 401 echoes the key it was sent, as careless servers do
            key = headers.get("authorization", "").removeprefix("Bearer ")
            message = {401: f"Incorrect API key provided: {key}", 404: "The model does not exist",
                       400: "Invalid request"}.get(self.status, "error")
            return self.status, {}, {"error": {"message": message, "type": "invalid_request_error",
                                               "code": str(self.status)}}
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(json.loads(body or b"{}"))
        if method == "GET" and path == "/v1/models":
            return 200, {}, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"}
                                                        for m in (self.models or ("test-model",))]}
        if method == "POST" and path == "/v1/files":
            return self._upload(headers, body)
        if method == "POST" and path == "/v1/batches":
            return self._create_batch(json.loads(body))
        match = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        if method == "GET" and match:
            return self._retrieve_batch(match.group(1))
        match = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if method == "GET" and match and match.group(1) in self.files:
            return 200, {}, self.files[match.group(1)]["content"]
        return 404, {}, {"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}

    # ----- chat completions ------------------------------------------------------------------
    def _fault(self) -> str | None:
        if self.script:
            return self.script.popleft()
        roll = self.random.random()
        for name, p in (("429", self.p429), ("500", self.p500), ("drop", self.pdrop), ("slow", self.pslow)):
            if roll < p:
                return name
            roll -= p
        return None

    def _rate_limited(self, now: float) -> float | None:
        """None when accepted, else seconds until the window has room."""
        if not self.rate_limit:
            return None
        window = self._accepted
        while window and window[0] <= now - self.rate_window:
            window.popleft()
        allowed = max(1, int(round(self.rate_limit * self.rate_window)))
        if len(window) >= allowed:
            return window[0] + self.rate_window - now
        window.append(now)
        return None

    def _retry_headers(self, seconds: float) -> dict:
        headers = {"Retry-After": str(max(1, math.ceil(seconds)))}
        if self.send_retry_after_ms:
            headers["retry-after-ms"] = str(max(1, int(seconds * 1000)))
        return headers

    async def _chat(self, body: dict):
        now = time.monotonic()
        stats = self.stats
        stats.requests += 1
        if stats.first_request is None:
            stats.first_request = now
        if self.models and body.get("model") not in self.models:
            return 404, {}, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                       "type": "invalid_request_error", "code": "model_not_found"}}
        wait = self._rate_limited(now)
        if wait is not None:
            stats.rate_limited += 1
            return 429, self._retry_headers(wait), {"error": {"message": "Rate limit reached", "type": "requests",
                                                              "code": "rate_limit_exceeded"}}
        fault = self._fault()
        if fault == "429":
            stats.injected_429 += 1
            return 429, self._retry_headers(self.retry_after), {"error": {"message": "Rate limit reached (injected)",
                                                                          "type": "requests"}}
        if fault == "500":
            stats.injected_500 += 1
            return 500, {}, {"error": {"message": "The server had an error (injected)", "type": "server_error"}}
        if fault == "drop":
            stats.dropped += 1
            return None
        messages = body.get("messages") or []
        stats.received.append(messages)
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        if self.context_limit is not None and len(prompt) > self.context_limit:
            stats.other_errors += 1  # OpenAI's words, on two lines as some servers send them
            return 400, {}, {"error": {"message": f"This model's maximum context length is {self.context_limit} "
                                                  f"tokens. However, your messages resulted in {len(prompt)} tokens."
                                                  "\nPlease reduce the length of the messages.",
                                       "type": "invalid_request_error", "param": "messages",
                                       "code": "context_length_exceeded"}}
        if self._sem is not None:
            await self._sem.acquire()
        try:
            self._in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, self._in_flight)
            delay = self.latency
            if fault == "slow":
                stats.slow += 1
                delay = self.slow_latency
            if delay:
                await asyncio.sleep(delay)
            content = self._answer(prompt, body)
        finally:
            self._in_flight -= 1
            if self._sem is not None:
                self._sem.release()
        stats.answered += 1
        stats.last_answer = time.monotonic()
        stats.answer_times.append(stats.last_answer)
        if body.get("stream"):
            return 200, {"Content-Type": "text/event-stream"}, self._event_stream(body, content)
        return 200, {}, self._completion(body, prompt, content)

    def _answer(self, prompt: str, body: dict) -> str:
        ask = self.stats.prompts[prompt]
        self.stats.prompts[prompt] += 1
        if self.answer is default_answer:
            return default_answer(prompt, body, ask)
        return self.answer(prompt, body)

    def _event_stream(self, body: dict, content: str, size: int = 8) -> bytes:
        """A ``stream=True`` answer: the content in chunks of ``size`` characters as server-sent events."""
        def event(delta: dict, finish: str | None) -> str:
            chunk = {"id": f"chatcmpl-{self.stats.answered}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": body.get("model", "test-model"),
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        events = [event({"content": content[i:i + size]}, None) for i in range(0, len(content), size)]
        return ("".join(events) + event({}, "stop") + "data: [DONE]\n\n").encode()

    def _completion(self, body: dict, prompt: str, content: str) -> dict:
        prompt_tokens, completion_tokens = approx_tokens(prompt), approx_tokens(content)
        return {
            "id": f"chatcmpl-{self.stats.answered}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    # ----- Batch API -------------------------------------------------------------------------
    def _upload(self, headers, body):
        match = re.search(r"boundary=\"?([^\";]+)\"?", headers.get("content-type", ""))
        if not match:
            return 400, {}, {"error": {"message": "expected multipart/form-data"}}
        boundary = b"--" + match.group(1).encode()
        fields, filename, content = {}, "upload.jsonl", b""
        for part in body.split(boundary):
            if b"\r\n\r\n" not in part:
                continue
            head, _, data = part.partition(b"\r\n\r\n")
            data = data[:-2] if data.endswith(b"\r\n") else data
            name = re.search(rb'name="([^"]*)"', head)
            fname = re.search(rb'filename="([^"]*)"', head)
            if fname:
                filename, content = fname.group(1).decode(), data
            elif name:
                fields[name.group(1).decode()] = data.decode()
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = {"content": content, "filename": filename, "purpose": fields.get("purpose", "")}
        return 200, {}, self._file_object(file_id)

    def _file_object(self, file_id):
        f = self.files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(f["content"]), "created_at": int(time.time()),
                "filename": f["filename"], "purpose": f["purpose"] or "batch", "status": "processed"}

    def _create_batch(self, body):
        if body.get("input_file_id") not in self.files:
            return 404, {}, {"error": {"message": "No such File object"}}
        batch_id = f"batch_{len(self.batches) + 1}"
        lines = [json.loads(x) for x in self.files[body["input_file_id"]]["content"].decode().splitlines() if x.strip()]
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
            "_polls": 0, "_lines": lines,
        }
        return 200, {}, self._public(self.batches[batch_id])

    @staticmethod
    def _public(batch):
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _retrieve_batch(self, batch_id):
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {}, {"error": {"message": "No such batch"}}
        batch["_polls"] += 1
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        if batch["status"] == "in_progress" and batch["_polls"] >= self.batch_polls:
            self._finish_batch(batch)
        return 200, {}, self._public(batch)

    def _finish_batch(self, batch):
        out, errors = [], []
        for n, line in enumerate(batch["_lines"]):
            body = line["body"]
            prompt = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
            if self.batch_expire_after is not None and n >= self.batch_expire_after:
                errors.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed "
                                         "before the completion window expired."}})
                continue
            if line["custom_id"] in self.batch_fail_ids:
                errors.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"],
                               "response": {"status_code": 500, "request_id": f"req_{n}",
                                            "body": {"error": {"message": "server error", "type": "server_error"}}},
                               "error": None})
                continue
            out.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"],
                        "response": {"status_code": 200, "request_id": f"req_{n}",
                                     "body": self._completion(body, prompt, self._answer(prompt, body))},
                        "error": None})
        out_id = f"file-{len(self.files) + 1}"
        self.files[out_id] = {"content": "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in out).encode(),
                              "filename": "batch_output.jsonl", "purpose": "batch_output"}
        batch["output_file_id"] = out_id
        if errors:
            err_id = f"file-{len(self.files) + 1}"
            self.files[err_id] = {"content": "".join(json.dumps(x) + "\n" for x in errors).encode(),
                                  "filename": "batch_errors.jsonl", "purpose": "batch_output"}
            batch["error_file_id"] = err_id
        expired = self.batch_expire_after is not None and self.batch_expire_after < len(batch["_lines"])
        batch["status"] = "expired" if expired else "completed"
        batch["request_counts"] = {"total": len(batch["_lines"]), "completed": len(out), "failed": len(errors)}


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error"}
