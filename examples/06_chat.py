"""Stage 6: the chat logic behind the crisis guard, as an app would call it (no terminal needed).

    python examples/06_chat.py [--adapter examples_output/adapter]
For the interactive terminal chat: cbt-llm chat --adapter examples_output/adapter
"""

import argparse

from cbt_llm.chat import ChatConfig, notice, respond

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--adapter", default="examples_output/adapter")
args = parser.parse_args()

# the options of `cbt-llm chat`, as one config; its back-end is the model the chat talks to
backend = ChatConfig(adapter=args.adapter, max_new_tokens=48, seed=0).backend()
print(notice("zh"))
history: list[dict] = []
for message in ("最近总是失眠，一躺下就想很多事情，怎么办？", "我不想活了，药已经准备好了。"):
    reply = respond(history, message, backend)
    print(f"\n用户> {message}\n[risk: {reply.risk.level}, model called: {reply.model_called}]\n助手> {reply.text}")
    history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply.text}]
