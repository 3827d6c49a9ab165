"""Model guards for production: the guard's third layer, a served or local model that reads each message.

Each is a callable ``text -> {"level", "reason"}`` to pass as ``assess_risk(text, model_guard=...)``;
it can only raise the level the offline layers gave. :class:`OpenAIRiskGuard` prompts a general chat
model over any OpenAI-compatible server; :class:`ServedQwen3Guard` asks a served Qwen3Guard-Gen model
(vLLM, SGLang: its chat template holds the moderation instructions, so the message is sent as it is)
and :class:`LocalQwen3Guard` runs one with transformers. Qwen3Guard answers ``Safety:
Safe|Controversial|Unsafe`` and ``Categories: ...``; only its ``Suicide & Self-Harm`` category counts
here (see :func:`parse_qwen3guard`). :func:`served_model_guard` picks one for a served model's name
(``cbt-llm chat --guard_model``). (The answer-grading judge of ``cbt-llm judge`` is another thing:
:mod:`cbt_llm.evaluation.judge`.) The ``openai`` client, torch and transformers are imported when a
guard is built, never at import.
"""

from __future__ import annotations

import json
import re

from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV
from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.risk import RANK


def _client(base_url: str | None, api_key_env: str, timeout: float, max_retries: int):
    """The project's OpenAI client for a guard; a missing key is an error unless ``base_url`` is a local server."""
    from cbt_llm.engine.endpoints import openai_client, resolve_api_key

    return openai_client(base_url, api_key=resolve_api_key(api_key_env, base_url), timeout=timeout,
                         max_retries=max_retries)


GUARD_SYSTEM_PROMPT = (
    "You are a safety classifier for a mental-health support chat in Chinese and English. "
    "Classify the user's message into exactly one level:\n"
    '- "crisis": the writer expresses suicidal thoughts or a wish to be dead, a plan, means or a question '
    "about lethal means, a farewell, self-harm, or has already taken an overdose; or someone present is in "
    "a medical emergency now.\n"
    '- "concern": hopelessness, worthlessness, wanting to disappear, severe distress without stated intent, '
    "or worry about another person who may be at risk.\n"
    '- "none": everything else, including hyperbole ("this job is killing me", 累死了) and discussion of '
    "the topic at a distance (articles, research, documentaries).\n"
    'Answer with one JSON object and nothing else: {"level": "none|concern|crisis", "reason": "<short reason>"}'
)


class OpenAIRiskGuard:
    """A model-based risk check over any OpenAI-compatible chat-completions server.

    ``OpenAIRiskGuard(base_url, model, api_key_env=...)``; calling it with a message returns
    ``{"level": ..., "reason": ...}``. The ``openai`` package is imported when the guard is built,
    never when :mod:`cbt_llm.safety` is imported. Pass it as ``assess_risk(text, model_guard=...)``.
    """

    def __init__(self, base_url: str | None, model: str, api_key_env: str = DEFAULT_API_KEY_ENV,
                 timeout: float = 30.0, max_retries: int = 1, system_prompt: str = GUARD_SYSTEM_PROMPT):
        self.model = model
        self.system_prompt = system_prompt
        self._client = _client(base_url, api_key_env, timeout, max_retries)

    def __call__(self, text: str) -> dict:
        response = self._client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": self.system_prompt}, {"role": "user", "content": text}],
            temperature=0,
            max_tokens=200,
        )
        content = (response.choices[0].message.content or "").strip()
        return parse_guard_answer(content)


def parse_guard_answer(content: str) -> dict:
    """The ``{"level", "reason"}`` object in a guard model's answer (tolerates code fences and chatter)."""
    match = re.search(r"\{.*\}", content, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and str(data.get("level", "")).strip().lower() in RANK:
            return {"level": str(data["level"]).strip().lower(), "reason": str(data.get("reason", ""))}
    bare = content.strip().strip('"').lower()
    if bare in RANK:
        return {"level": bare, "reason": ""}
    # the wording lands in the verdict's judge_error note, which stays as it was
    raise CbtLlmError(f"risk judge answer has no level: {content[:200]!r}")


# ------------------------------------------------------------------------------------------ Qwen3Guard
QWEN3GUARD_MODEL = "Qwen/Qwen3Guard-Gen-4B"
SELF_HARM_CATEGORY = "Suicide & Self-Harm"
_SAFETY_LINE = re.compile(r"Safety:\s*(Safe|Unsafe|Controversial)", re.I)
_CATEGORIES_LINE = re.compile(r"Categories:\s*(.+)", re.I)


def parse_qwen3guard(content: str) -> dict:
    """A Qwen3Guard-Gen answer as ``{"level", "reason"}``.

    ``Unsafe`` with the ``Suicide & Self-Harm`` category is crisis, ``Controversial`` with it is
    concern; any other category (violence, PII ...) is not this guard's business and reads as none.
    An answer without a ``Safety:`` line is an error (the caller keeps the offline verdict).
    """
    safety = _SAFETY_LINE.search(content or "")
    if not safety:
        raise CbtLlmError(f"Qwen3Guard answer has no Safety line: {(content or '')[:200]!r}")
    found = _CATEGORIES_LINE.search(content)
    categories = [c.strip() for c in found.group(1).split(",")] if found else []
    self_harm = any(c.lower() == SELF_HARM_CATEGORY.lower() for c in categories)
    label = safety.group(1).capitalize()
    level = "none" if not self_harm else {"Unsafe": "crisis", "Controversial": "concern"}.get(label, "none")
    return {"level": level, "reason": f"Qwen3Guard {label}: {', '.join(categories) or 'None'}"}


class ServedQwen3Guard:
    """Qwen3Guard-Gen served behind an OpenAI-compatible API (``vllm serve Qwen/Qwen3Guard-Gen-4B``).

    The message goes as the single user turn (the model's chat template adds the moderation policy);
    the answer is read with :func:`parse_qwen3guard`.
    """

    def __init__(self, base_url: str | None, model: str = QWEN3GUARD_MODEL, api_key_env: str = DEFAULT_API_KEY_ENV,
                 timeout: float = 30.0, max_retries: int = 1):
        self.model = model
        self._client = _client(base_url, api_key_env, timeout, max_retries)

    def __call__(self, text: str) -> dict:
        response = self._client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": text}], temperature=0, max_tokens=64)
        return parse_qwen3guard(response.choices[0].message.content or "")


class LocalQwen3Guard:
    """Qwen3Guard-Gen on this machine with transformers: greedy decoding of a few tokens per message."""

    def __init__(self, name_or_path: str = QWEN3GUARD_MODEL, device: str = "auto", max_new_tokens: int = 32):
        from cbt_llm.models.loading import load_model_and_tokenizer

        self.model, self.tokenizer = load_model_and_tokenizer(name_or_path, device=device)
        self.max_new_tokens = max_new_tokens

    def __call__(self, text: str) -> dict:
        import torch

        inputs = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                    return_tensors="pt", return_dict=True).to(self.model.device)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id)
        answer = self.tokenizer.decode(output[0][inputs["input_ids"].shape[-1]:], skip_special_tokens=True)
        return parse_qwen3guard(answer)


def served_model_guard(model: str, base_url: str | None,
                       api_key_env: str = DEFAULT_API_KEY_ENV) -> OpenAIRiskGuard | ServedQwen3Guard:
    """The model guard for a served ``model``: :class:`ServedQwen3Guard` when its name says Qwen3Guard (it
    answers in its own format), else :class:`OpenAIRiskGuard` (the JSON verdict prompt)."""
    kind = ServedQwen3Guard if "qwen3guard" in model.lower() else OpenAIRiskGuard
    return kind(base_url, model, api_key_env=api_key_env)
