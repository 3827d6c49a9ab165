"""`cbt-llm chat` driven through a pseudo-terminal (pexpect), with the tiny adapter and a counting server.

Two kinds of evidence that the model is (or is not) called on a turn:

* local mode (tiny adapter): the chat's trace file ($CBT_LLM_CHAT_TRACE), where the back-end counts
  each ``model.generate`` it starts and each chunk its ``TextIteratorStreamer`` yields;
* endpoint mode: a loopback OpenAI-compatible server in this file that streams its answer as SSE and
  counts the requests it receives, so "the model was not asked" is counted where the model would be.

(tests/chat_server.py answers chat completions without streaming, so it cannot serve `stream=True`.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pexpect
import pytest

from cbt_llm.chat import (
    ChatConfig,
    EndpointBackend,
    GenerationSettings,
    LocalBackend,
    concern_footer,
    notice,
    run_chat,
)
from cbt_llm.cli.legacy import translate
from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.errors import CbtLlmError
from cbt_llm.safety import OpenAIRiskGuard, ServedQwen3Guard

slow = pytest.mark.slow  # the tests that start a server or a process (the tiny-model ones are marked by conftest)

SCRIPT = Path(sys.executable).parent / "cbt-llm"
ZH_PROMPT, ZH_ASSISTANT = "你> ", "助手> "
EN_PROMPT, EN_ASSISTANT = "you> ", "assistant> "
NORMAL = "我最近总是睡不好，一想到考试就很担心"
CONCERN = "最近活着好累，每天都在哭"
CRISIS = "我不想活了，药都准备好了"
FOOTER_START = concern_footer("zh").strip().splitlines()[0]  # "——"
ANSWER_CHUNKS = ["先", "深呼吸", "一下，", "我们", "一起", "看看", "发生了", "什么。"]
ANSWER = "".join(ANSWER_CHUNKS)


# ------------------------------------------------------------------------------------ helpers
class StreamingChatServer:
    """A loopback chat-completions server that streams ``chunks`` as SSE and records every request."""

    def __init__(self, chunks=ANSWER_CHUNKS, delay: float = 0.0):
        self.chunks, self.delay = list(chunks), delay
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not body.get("stream"):
                    data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                           "role": "assistant", "content": "".join(server.chunks)}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for i, text in enumerate(server.chunks):
                        event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
                        self.wfile.flush()
                        if server.delay:
                            time.sleep(server.delay)
                    end = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (Ctrl-C)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


def spawn(args, tmp_path, **env) -> tuple[pexpect.spawn, Path]:
    """`cbt-llm chat ARGS` in a pseudo-terminal; returns the child and its trace file."""
    trace = tmp_path / f"trace-{time.monotonic_ns()}.jsonl"
    full_env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
                "CBT_LLM_CHAT_TRACE": str(trace), **env}
    full_env.pop("OPENAI_API_KEY", None)
    child = pexpect.spawn(str(SCRIPT), ["chat", *map(str, args)], env=full_env, encoding="utf-8", timeout=60,
                          dimensions=(50, 250))
    return child, trace


def turn(child, message: str, prompt: str = ZH_PROMPT, assistant: str = ZH_ASSISTANT) -> str:
    """Send one message; return what was printed after the assistant marker, up to the next prompt."""
    child.sendline(message)
    child.expect_exact(assistant)
    child.expect_exact(prompt)
    return child.before.replace("\r\n", "\n").strip()


def read_trace(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def finish(child, command: str = "/exit") -> str:
    child.sendline(command)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
    return child.before


# --------------------------------------------------------------------------- local adapter (pty)
@slow
def test_chat_with_the_tiny_adapter(tiny_adapter, tmp_path):
    child, trace = spawn(["--adapter", tiny_adapter, "--max-new-tokens", "24", "--seed", "0"], tmp_path)
    child.expect_exact(ZH_PROMPT)
    opening = child.before
    assert notice("zh") in opening and "12356" in opening  # the not-a-substitute notice comes first
    assert opening.index(notice("zh")) < opening.index("正在加载")

    # a normal turn: the model is called and its answer streams in more than one chunk
    answer = turn(child, NORMAL)
    (record,) = read_trace(trace)
    assert record["level"] == "none" and record["model_called"] and record["backend_calls"] == 1
    assert record["chunks"] > 1
    assert answer and "12356" not in answer
    assert record["messages"] == 2  # system line + the user turn

    # a concern turn: the model's answer, then the resources
    answer = turn(child, CONCERN)
    record = read_trace(trace)[-1]
    assert record["level"] == "concern" and record["backend_calls"] == 1 and record["chunks"] > 0
    assert FOOTER_START in answer and "12356" in answer
    assert answer.index(FOOTER_START) > 0  # model text came before the footer
    assert record["messages"] == 4  # the history went along

    # a crisis turn: the fixed reply with the resources; generate was never started
    answer = turn(child, CRISIS)
    record = read_trace(trace)[-1]
    assert record["level"] == "crisis" and not record["model_called"]
    assert record["backend_calls"] == 0 and record["chunks"] == 0
    assert answer.startswith("听到你这样说") and "12356" in answer and "120" in answer

    # /reset: the history is gone (and with it the crisis that would keep the next turn at concern)
    child.sendline("/reset")
    child.expect_exact("对话已清空")
    child.expect_exact(ZH_PROMPT)
    answer = turn(child, "谢谢你")
    record = read_trace(trace)[-1]
    assert record["level"] == "none" and record["messages"] == 2 and record["backend_calls"] == 1
    assert "12356" not in answer

    rest = finish(child, "/exit")
    assert "对话结束（4 轮）" in rest
    assert len(read_trace(trace)) == 4


@slow
def test_chat_with_a_plain_base_model_by_tiny_name(tmp_path):
    child, trace = spawn(["--model_name_or_path", "cbt-llm/tiny-random-llama", "--language", "en",
                          "--max-new-tokens", "16", "--seed", "1"], tmp_path)
    child.expect_exact(EN_PROMPT)
    assert notice("en") in child.before
    turn(child, "I have been sleeping badly before exams", EN_PROMPT, EN_ASSISTANT)
    (record,) = read_trace(trace)
    assert record["backend_calls"] == 1 and record["chunks"] >= 1
    child.sendeof()  # Ctrl-D ends the chat too
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# ------------------------------------------------------------------------ served model (pty)
@slow
def test_chat_against_a_served_model_counts_requests(tmp_path):
    with StreamingChatServer() as server:
        child, _ = spawn(["--base-url", server.base_url, "--model", "cbt-test", "--api-key-env", "CBT_TEST_KEY",
                          "--max-new-tokens", "64", "--temperature", "0.2"], tmp_path, CBT_TEST_KEY="sk-test-123")
        child.expect_exact(ZH_PROMPT)
        assert notice("zh") in child.before

        answer = turn(child, NORMAL)
        assert answer == ANSWER and len(server.requests) == 1
        request = server.requests[0]
        assert request["stream"] is True and request["model"] == "cbt-test"
        assert request["max_tokens"] == 64 and request["temperature"] == 0.2
        assert request["messages"] == [{"role": "system", "content": SYSTEM_PROMPT_ZH},
                                       {"role": "user", "content": NORMAL}]
        assert server.headers[0].get("authorization") == "Bearer sk-test-123"  # the key came from the env var

        answer = turn(child, CRISIS)
        assert len(server.requests) == 1, "the model was asked on a crisis turn"
        assert "12356" in answer and answer.startswith("听到你这样说")

        answer = turn(child, "谢谢你")  # right after a crisis: kept at concern, so the resources follow
        assert len(server.requests) == 2
        assert answer.startswith(ANSWER) and FOOTER_START in answer and "12356" in answer
        assert len(server.requests[1]["messages"]) == 6  # system + 2 earlier turns + this one

        answer = turn(child, CONCERN)
        assert len(server.requests) == 3
        assert answer.startswith(ANSWER) and answer.index(FOOTER_START) > len(ANSWER) - 1

        child.sendline("/reset")
        child.expect_exact("对话已清空")
        child.expect_exact(ZH_PROMPT)
        answer = turn(child, NORMAL)
        assert answer == ANSWER and len(server.requests) == 4
        assert len(server.requests[3]["messages"]) == 2  # only the system line and this turn

        finish(child, "/exit")


@slow
def test_served_history_is_trimmed_to_the_context_window(tmp_path):
    long = "我最近压力很大" * 30  # 210 CJK characters: about 210 estimated tokens
    with StreamingChatServer() as server:
        child, _ = spawn(["--base_url", server.base_url, "--model", "m", "--context_tokens", "700",
                          "--max-new-tokens", "100"], tmp_path)
        child.expect_exact(ZH_PROMPT)
        for n in range(4):
            turn(child, f"{n}{long}")
        finish(child)
    sizes = [len(r["messages"]) for r in server.requests]
    assert sizes[:2] == [2, 4]
    last = server.requests[-1]["messages"]
    assert len(last) < 8 and last[0]["role"] == "system" and last[1]["role"] == "user"
    assert last[-1]["content"].startswith("3")  # the newest turn always goes along


@slow
def test_ctrl_c_stops_an_answer_and_keeps_the_resources(tmp_path):
    with StreamingChatServer(chunks=["第一段。"] + ["慢慢来。"] * 40, delay=0.1) as server:
        child, trace = spawn(["--base-url", server.base_url, "--model", "m"], tmp_path)
        child.expect_exact(ZH_PROMPT)
        child.sendline(CONCERN)
        child.expect_exact("第一段。")
        child.sendintr()  # Ctrl-C while the answer streams
        child.expect_exact("已停止")
        child.expect_exact(ZH_PROMPT)
        assert "12356" in child.before  # the concern footer is shown even though the answer was cut
        (record,) = read_trace(trace)
        assert record["interrupted"] and record["level"] == "concern"
        child.sendintr()  # Ctrl-C at the prompt ends the chat cleanly
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0


@pytest.mark.parametrize("args,words", [
    ([], "--adapter"),
    (["--base_url", "http://127.0.0.1:9/v1"], "--model"),
    (["--adapter", "x", "--model", "m"], "not both"),
    (["--model", "m", "--base_url", "http://127.0.0.1:9/v1", "--context_tokens", "0"], "--context_tokens"),
    (["--model_name_or_path", "m", "--top_p", "0"], "top_p"),
])
def test_chat_argument_errors_are_one_line(args, words, capsys):
    from cbt_llm.cli import main

    assert main(["chat", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cbt-llm chat: error:") and words in err and err.count("\n") == 1


def test_chat_without_a_model_suggests_only_current_flags(capsys):
    from cbt_llm.cli import main
    from cbt_llm.cli.legacy import RENAMED

    assert main(["chat"]) == 1
    flags = set(re.findall(r"--[\w-]+", capsys.readouterr().err))
    assert flags == {"--adapter", "--model_name_or_path", "--base_url", "--model"}  # no deprecated --base
    assert not flags & set(RENAMED["chat"])


# ----------------------------------------------------------------------------- in process
class FakeBackend:
    """A back-end that records calls; ``fail`` raises after the first chunk, ``interrupt`` raises Ctrl-C."""

    def __init__(self, chunks=("好的", "，我在听。"), fail=False, interrupt=False):
        self.chunks, self.fail, self.interrupt = chunks, fail, interrupt
        self.calls, self.stopped = 0, 0
        self.settings = GenerationSettings(max_new_tokens=64)
        self.context_tokens = 1024
        self.count_tokens = len

    def stop(self):
        self.stopped += 1

    def __call__(self, messages):
        self.calls += 1
        yield self.chunks[0]
        if self.fail:
            raise CbtLlmError("server went away")
        if self.interrupt:
            raise KeyboardInterrupt
        yield from self.chunks[1:]


class Output:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def lines(*items):
    items = iter(items)

    def read(prompt):
        try:
            return next(items)
        except StopIteration:
            raise EOFError from None

    return read


def test_a_failing_model_on_a_concern_turn_still_shows_the_resources(tmp_path):
    backend, out = FakeBackend(fail=True), Output()
    trace = tmp_path / "t.jsonl"
    closing = run_chat(backend, input_fn=lines(CONCERN, "/exit", "never read"), output=out, trace=str(trace))
    assert "server went away" in out.text and "12356" in out.text and backend.calls == 1
    assert closing == "对话结束（1 轮）"
    assert read_trace(trace)[0]["error"].endswith("server went away")


def test_interrupt_inside_the_model_stops_it_and_the_chat_goes_on():
    backend, out = FakeBackend(interrupt=True), Output()
    run_chat(backend, input_fn=lines(CONCERN, NORMAL), output=out)
    assert backend.stopped == 2 and backend.calls == 2
    assert out.text.count("已停止") == 2
    body = out.text.removeprefix(notice("zh"))
    assert body.count("全国心理援助热线") == 1  # the footer after the cut concern turn, not after the normal one


def test_unknown_commands_and_blank_lines_do_not_reach_the_model():
    backend, out = FakeBackend(), Output()
    run_chat(backend, input_fn=lines("", "   ", "/help", "/nope", "/quit"), output=out)
    assert backend.calls == 0 and "未知命令 /nope" in out.text
    assert out.text.startswith(notice("zh"))  # apps that run the loop themselves get the notice too


def test_the_terminal_prints_model_text_without_its_escape_sequences():
    chunks = ("先\x1b[2J\x1b[31m红", "\x1b]52;c;", "ZXZpbA==\x07字\x1b[", "0m\r\n结束\x1b]8;;https://x.example\x07链接",
              "\x1b]8;;\x07\x07\x9b2J\x1bc。\x00\x08\r")
    backend, out = FakeBackend(chunks=chunks), Output()
    run_chat(backend, input_fn=lines(NORMAL), output=out)
    assert "先红字\n结束链接。" in out.text  # the words, without a cleared screen, colours, a hyperlink or a reset
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out.text)  # no ESC, CR, BEL, backspace, C1 CSI
    assert "ZXZp" not in out.text and "[0m" not in out.text  # a sequence cut between two chunks is removed whole


SECRET = "sk-live-echoed-0123456789"


def echoing_backend(monkeypatch) -> EndpointBackend:
    """An EndpointBackend whose server (in process, no socket) answers 401 with the key it was sent."""
    import httpx

    def reject(request):
        key = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {key}",
                                                   "type": "invalid_request_error", "code": "invalid_api_key"}})

    monkeypatch.setenv("CBT_TEST_KEY", SECRET)
    backend = EndpointBackend("m", "http://127.0.0.1:9/v1", api_key_env="CBT_TEST_KEY", max_retries=0)
    backend._client = backend._client.with_options(http_client=httpx.Client(transport=httpx.MockTransport(reject)))
    return backend


def test_a_401_that_echoes_the_key_keeps_it_off_the_terminal_the_page_and_the_traces(monkeypatch, tmp_path):
    from cbt_llm.app.chat_tab import GuardedChat

    backend, out, trace = echoing_backend(monkeypatch), Output(), tmp_path / "chat.jsonl"
    run_chat(backend, input_fn=lines(NORMAL), output=out, trace=str(trace))
    page_trace = tmp_path / "app.jsonl"
    shown = list(GuardedChat(backend, trace_file=page_trace).turn(NORMAL, []))[-1][0]
    assert backend.calls == 2
    for text in (out.text, trace.read_text(encoding="utf-8"), shown[-1]["content"],
                 page_trace.read_text(encoding="utf-8")):
        assert "HTTP 401" in text and "Incorrect API key provided: ***" in text and SECRET not in text


def test_max_new_tokens_must_leave_room_for_the_conversation():
    backend = FakeBackend()
    backend.context_tokens = 64
    with pytest.raises(CbtLlmError, match="no room"):
        run_chat(backend, input_fn=lines(), output=Output())


def test_local_backend_counts_with_the_tokenizer_and_stops_on_close(tiny_model):
    backend = LocalBackend(model_name_or_path="cbt-llm/tiny-random-llama",
                           settings=GenerationSettings(max_new_tokens=200, seed=0))
    assert backend.context_tokens == backend.model.config.max_position_embeddings
    text = "我最近总是睡不好"
    assert backend.count_tokens(text) == len(backend.tokenizer.encode(text, add_special_tokens=False))
    stream = backend([{"role": "user", "content": text}])
    first = next(stream)
    assert first and backend.calls == 1
    started = time.monotonic()
    stream.close()  # stops generation and joins the thread long before 200 tokens
    assert time.monotonic() - started < 5
    assert not any(t.name == "cbt-llm-generate" and t.is_alive() for t in threading.enumerate())


def test_endpoint_backend_takes_the_key_from_the_environment_only(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(CbtLlmError, match="OPENAI_API_KEY"):
        EndpointBackend("gpt-x")  # no server given and no key: refuse rather than send nothing
    backend = EndpointBackend("m", "http://127.0.0.1:9/v1", context_tokens=None)
    assert backend.context_tokens == 8192 and backend.count_tokens("你好ab") == 3


@slow
def test_importing_the_chat_module_stays_light():
    code = ("import sys, cbt_llm.chat, cbt_llm.training.merge, cbt_llm.cli; cbt_llm.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'peft', 'openai') if m in sys.modules))")  # the parser is transformers'
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_the_terminal_reads_the_last_turns_together():
    backend, out = FakeBackend(), Output()
    run_chat(backend, language="en", output=out,
             input_fn=lines("I have a plan", "tonight is the night", "ok, I will call the line"))
    # turn 2 completes the plan told over two lines: the fixed reply, the model is not called; turn 3
    # is answered by the model with the resources after it, and the crisis reply is not repeated
    assert backend.calls == 2
    assert out.text.count("Would you be willing to contact one of them now?") == 1
    assert out.text.count("you can reach out any time") == 1


def test_a_model_guard_raises_the_turn_to_crisis_before_the_model_is_asked():
    backend, out, asked = FakeBackend(), Output(), []

    def model_guard(text):
        asked.append(text)
        return {"level": "crisis", "reason": "guard model"}

    run_chat(backend, language="en", output=out, model_guard=model_guard, input_fn=lines("I am on the roof"))
    assert asked == ["I am on the roof"] and backend.calls == 0
    assert "Would you be willing to contact one of them now?" in out.text


# ------------------------------------------------------------------------------------ the config
def test_chat_config_picks_the_backend_and_the_guard_model(monkeypatch):
    monkeypatch.setenv("CBT_TEST_KEY", "sk-test")
    config = ChatConfig(base_url="http://127.0.0.1:9/v1", model="served", api_key_env="CBT_TEST_KEY",
                        max_new_tokens=64, temperature=0, context_tokens=900, timeout=5,
                        guard_model="Qwen/Qwen3Guard-Gen-4B", guard_base_url="http://127.0.0.1:8/v1")
    backend = config.backend()  # the served model: nothing is loaded and nothing is sent
    assert isinstance(backend, EndpointBackend) and backend.describe() == "model served at http://127.0.0.1:9/v1"
    assert backend.settings == GenerationSettings(64, 0, 0.9, None) and backend.context_tokens == 900
    guard = config.guard()
    assert isinstance(guard, ServedQwen3Guard) and guard.model == "Qwen/Qwen3Guard-Gen-4B"
    other = ChatConfig(model="m", base_url="http://h/v1", guard_model="risk", guard_base_url="http://g/v1")
    assert isinstance(other.guard(), OpenAIRiskGuard)
    assert ChatConfig(model_name_or_path="cbt-llm/tiny-random-llama").guard() is None


def test_the_old_judge_flags_name_the_guard_model(capsys):
    assert translate(["chat", "--model_name_or_path", "m", "--judge-model", "g", "--judge_base_url=http://g/v1"]) == \
        ["chat", "--model_name_or_path", "m", "--guard_model", "g", "--guard_base_url=http://g/v1"]
    assert capsys.readouterr().err.splitlines() == [
        "cbt-llm chat: --judge-model is deprecated; use --guard_model",
        "cbt-llm chat: --judge_base_url is deprecated; use --guard_base_url"]
