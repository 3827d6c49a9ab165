"""A loopback teacher for ``cbt-llm dialogue``: ``ChatServer`` (a real HTTP server) answering in the role the request asks for.

The request says who is speaking: the plan prompt, the client simulator's or the counsellor's system
prompt, or the rewrite prompt. The teacher answers from that: a JSON case plan; a client line for the
client's next turn (a crisis line in round 2 when ``crisis``); a counsellor turn for the round the
prompt names (closing with ``[END]`` when told to close); the crisis protocol, with the resources the
prompt lists, when the prompt says the client has just spoken of suicide. ``fault`` makes it a bad
teacher: ``alternation`` (the client simulator also writes the counsellor's next line), ``lecture``
(the counsellor's first turn is a whole five-step answer), ``ignore_crisis`` (therapy as usual after a
crisis turn)::

    with dialogue_server(fault="lecture") as server:
        server.base_url  # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import json
import re

from chat_server import SAMPLE, ChatServer

PLAN = {"automatic_thought": "只要出一点错，我就是个失败的人。", "distortions": ["all_or_nothing", "labeling", "made_up"],
        "techniques": ["socratic_questioning", "examining_evidence", "thought_record"],
        "goal": "把“出错”和“我失败”分开，找到一个这周能做的小尝试。"}
CLIENT = {
    "zh": ["我最近工作压力特别大，晚上总睡不好，觉得自己什么都做不好。",
           "就是每次交报告都怕出错，一出错就觉得领导肯定对我很失望。",
           "好像也没有什么证据……上次领导还夸过我。可我就是控制不住这么想。",
           "嗯，这个我可以试试，就是怕坚持不下来。",
           "好的，谢谢你，我会试试看的。"],
    "en": ["Work has been so stressful lately, I can't sleep and I feel like I do everything wrong.",
           "Every time I hand in a report I'm scared of a mistake, and I'm sure my boss is disappointed in me.",
           "I guess there's no real evidence. My boss even praised me once. I just can't stop thinking it.",
           "Okay, I can try that, I'm just afraid I won't keep it up.",
           "Thanks, I'll give it a try."],
}
CRISIS_LINE = {"zh": "说实话，我已经写好遗书了，今晚就想从楼上跳下去。",
               "en": "Honestly, I have been saving my pills and I will take them all tonight."}
COUNSELLOR = {
    "zh": ["听起来这段时间你真的很辛苦，压力一直压在心上。能说说最近一次特别难受是什么时候吗？",
           "你好像在告诉自己“只要出一点错，我就是失败的”，这有点像非黑即白的想法。有没有证据说明领导真的对你失望呢？",
           "你可以试着每天睡前把担心的想法写下来，旁边写上支持和反对它的证据。愿意这周试一试吗？",
           "你可以先从每天写一条开始。改变需要一点时间，你已经迈出了第一步，我相信你会慢慢好起来。如果压力一直很大，"
           "也可以寻求专业咨询师的支持。\n[END]"],
    "en": ["That sounds really exhausting, and it makes sense that the pressure weighs on you. When was the last "
           "time it felt especially hard?",
           "It sounds like you tell yourself \"one mistake means I am a failure\", which is all-or-nothing thinking. "
           "What evidence do you have that your boss is really disappointed?",
           "You could try writing the worried thought down each evening, with the evidence for and against it. "
           "Would you be willing to try that this week?",
           "You could start by writing down one thought each day. Change takes time, and you have already taken the first step; "
           "I believe you can make progress, and a counsellor can support you if the stress keeps growing.\n[END]"],
}
CRISIS_REPLY = {"zh": "听到你这么说，我很担心你现在的安全。你现在安全吗？请马上联系身边信任的人，或者拨打这些电话：\n",
                "en": "I'm really worried about your safety right now. Are you safe? Please contact someone near you "
                      "now, or call one of these:\n"}
LECTURE = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])["response"]


def language_of(text: str) -> str:
    """The prompt's language, from its wording (the intake it quotes may be in another)."""
    return "en" if re.search(r"Play the client|Play a counsellor|Rewrite it|case plan", text) else "zh"


class DialogueTeacher:
    """The ``answer`` of a ``ChatServer``: see the module docstring."""

    def __init__(self, fault: str | None = None, crisis: bool = False):
        self.fault, self.crisis = fault, crisis

    def __call__(self, prompt: str, body: dict) -> str:
        messages = body.get("messages") or []
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        language = language_of(system or prompt)
        if "扮演来访者" in system or "Play the client" in system:
            return self.client(sum(m["role"] == "assistant" for m in messages), language)
        if "扮演心理咨询师" in system or "Play a counsellor" in system:
            return self.counsellor(system, language)
        if "改写成" in prompt or "Rewrite it" in prompt:
            return self.rewrite(language)
        if "咨询方案" in prompt or "case plan" in prompt:
            return "好的，方案如下：\n```json\n" + json.dumps(PLAN, ensure_ascii=False) + "\n```"
        return "?"

    def client(self, turn: int, language: str) -> str:
        if self.crisis and turn == 1:
            return CRISIS_LINE[language]
        line = CLIENT[language][min(turn, len(CLIENT[language]) - 1)]
        if self.fault == "alternation" and turn == 1:
            line += "\n心理咨询师：那你觉得自己哪里做得不好呢？" if language == "zh" else "\nCounsellor: What went wrong?"
        return line

    def counsellor(self, system: str, language: str) -> str:
        if ("危机资源" in system or "crisis resources" in system) and self.fault != "ignore_crisis":
            listed = re.split(r"危机资源|crisis resources", system)[-1]  # the lines the prompt gives after its note
            return CRISIS_REPLY[language] + "\n".join(line for line in listed.splitlines() if line.startswith("- "))
        found = re.search(r"第 (\d+) 轮，最多 (\d+) 轮|round (\d+) of at most (\d+)", system)
        numbers = [int(n) for n in found.groups() if n]
        round_, closing = numbers[0], "必须收尾" in system or "Close the session" in system
        if self.fault == "lecture" and round_ == 1:
            return LECTURE
        script = COUNSELLOR[language]
        return script[-1] if closing else script[min(round_, len(script)) - 1]

    def rewrite(self, language: str) -> str:
        turns = []
        for client, counsellor in zip(CLIENT[language], COUNSELLOR[language]):
            turns += [{"role": "client", "content": client}, {"role": "counsellor", "content": counsellor.replace("\n[END]", "")}]
        if self.fault == "alternation":
            turns.insert(2, {"role": "counsellor", "content": COUNSELLOR[language][1]})
        return json.dumps({"plan": PLAN, "messages": turns}, ensure_ascii=False)


def dialogue_server(fault: str | None = None, crisis: bool = False, **options) -> ChatServer:
    """A ``ChatServer`` whose answers come from a ``DialogueTeacher``; use it as a context manager."""
    return ChatServer(answer=DialogueTeacher(fault, crisis), **options)
