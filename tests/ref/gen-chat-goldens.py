#!/usr/bin/env python3
"""Regenerate tests/ref/goldens/chat.json: chat prompts rendered by jinja2.

usage: tests/ref/gen-chat-goldens.py [--model MODEL.gguf] [--out FILE]

Templates:
  smollm2  the default model's tokenizer.chat_template, read from its GGUF
           with the gguf package (the text is stored in the golden too, so
           the C test runs without the model and checks the model's copy
           when it is there); when the model is absent the previous
           golden's text is reused.
  llama2   Meta's Llama-2-chat template as published in the
           meta-llama/Llama-2-7b-chat-hf tokenizer_config.json
           (bos_token "<s>", eos_token "</s>").
  llama3   Meta's Llama-3-Instruct template as published in the
           meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json
           (bos_token "<|begin_of_text|>").
Rendering follows transformers' apply_chat_template: a sandboxed jinja2
environment with trim_blocks and lstrip_blocks, a raise_exception global,
and messages / add_generation_prompt / bos_token / eos_token as variables.
A conversation whose template raises gets "error": true.
"""
import argparse
import json
import os

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")

TOKENS = {"smollm2": ("<|im_start|>", "<|im_end|>"), "llama2": ("<s>", "</s>"),
          "llama3": ("<|begin_of_text|>", "<|end_of_text|>")}


def S(c): return {"role": "system", "content": c}
def U(c): return {"role": "user", "content": c}
def A(c): return {"role": "assistant", "content": c}


CONVERSATIONS = [
    [U("Hello!")],
    [S("You are terse."), U("What is 2+2?")],
    [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")],
    [S("Be kind."), U("Hi"), A("Hey."), U("Bye")],
    [U("  padded both sides \n"), A("\tanswer with tabs\t")],
    [S("  system with spaces  "), U("\u3000ideographic space\u00a0"), A("\x85next line\u2028")],
    [U("")],
    [S(""), U("empty system")],
    [U("multi\nline\n\ncontent"), A("```python\nprint('x')\n```")],
    [U("<|im_start|>looks special<|im_end|> [INST] <<SYS>> <|eot_id|>")],
    [U("héllo wörld 你好 🍕")],
    [S("only a system message")],
    [U("one"), U("two")],                     # llama2: roles must alternate
    [A("assistant first")],                   # llama2: error
    [S("sys"), U("u1"), A("a1"), S("late system"), U("u2")],
]


def render(env, text, kind, messages, gen):
    bos, eos = TOKENS[kind]
    try:
        return env.from_string(text).render(messages=messages, add_generation_prompt=gen,
                                            bos_token=bos, eos_token=eos), False
    except jinja2.TemplateError:
        return None, True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models",
                                                    "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(HERE, "goldens", "chat.json"))
    args = ap.parse_args()

    if os.path.exists(args.model):
        from gguf import GGUFReader
        smollm2 = GGUFReader(args.model).fields["tokenizer.chat_template"].contents()
    else:
        print(f"{args.model} not found: reusing the SmolLM2 template text in {args.out}")
        with open(args.out, encoding="utf-8") as f:
            smollm2 = json.load(f)["templates"]["smollm2"]["text"]

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    templates = {"smollm2": {"kind": "chatml", "text": smollm2},
                 "llama2": {"kind": "llama2", "text": LLAMA2},
                 "llama3": {"kind": "llama3", "text": LLAMA3}}
    cases = []
    for name, t in templates.items():
        for conv in CONVERSATIONS:
            for gen in (False, True):
                out, err = render(env, t["text"], name, conv, gen)
                cases.append({"template": name, "messages": conv, "add_generation_prompt": gen,
                              "output": out, "error": err})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"reference": f"jinja2 {jinja2.__version__}", "templates": templates,
                   "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(args.out, ROOT)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
