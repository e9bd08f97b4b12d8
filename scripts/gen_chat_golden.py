#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/chat_golden.json: Meta's Llama 3.0, 3.1 and 3.2 chat templates rendered
for a set of tool-less conversations, exactly as Hugging Face transformers' apply_chat_template renders them.

The templates are the fixtures tests/fixtures/tokenizer/chat_template_llama3.{0,1,2}.jinja (where each text
comes from: TEMPLATES below). They are rendered here with jinja2 in the environment transformers builds
(transformers/utils/chat_template_utils.py, _cached_compile_jinja_template): an ImmutableSandboxedEnvironment
with trim_blocks and lstrip_blocks, the loopcontrols extension, its own `tojson` filter and the globals
`raise_exception` and `strftime_now`; render() gets messages, tools=None, documents=None,
add_generation_prompt, the tokenizer's special tokens (bos_token, eos_token) and date_string when a case
sets one. When transformers is importable, every case is also rendered by apply_chat_template itself and
must match.

    pip install jinja2 [transformers]
    python3 scripts/gen_chat_golden.py
"""

import json
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "tokenizer"
OUT = FIXTURES / "chat_golden.json"

BOS = "<|begin_of_text|>"
EOS = "<|eot_id|>"

# (name, fixture file, where its text comes from)
TEMPLATES = [
    (
        "llama3.0",
        "chat_template_llama3.0.jinja",
        "'chat_template' of the shared tokenizers/llama3/tokenizer_config.json (Meta-Llama-3-8B-Instruct's "
        "original template, assistant header unconditional)",
    ),
    (
        "llama3.1",
        "chat_template_llama3.1.jinja",
        "meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json 'chat_template', from a verbatim copy in "
        "public GitHub code (a project that sets it as its Llama chat template), checked line by line against "
        "the published text as known; the gated repository itself cannot be downloaded here",
    ),
    (
        "llama3.2",
        "chat_template_llama3.2.jinja",
        "meta-llama/Llama-3.2-1B-Instruct and -3B-Instruct tokenizer_config.json 'chat_template', as stored "
        "by llama.cpp in models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja (fetched from the Hugging "
        "Face repository by its scripts/get_chat_template.py)",
    ),
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "system_user": [SYSTEM, {"role": "user", "content": "What is 2+2?"}],
    "user_only": [{"role": "user", "content": "Hello!"}],
    "multi_turn": [
        SYSTEM,
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  And 3+3?\n"},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "ends_with_assistant": [
        {"role": "user", "content": "Say yes."},
        {"role": "assistant", "content": " yes \n\n"},
    ],
    "system_only": [{"role": "system", "content": "Be terse."}],
    "padded_system": [
        {"role": "system", "content": "\n\t  Padded system prompt.  \n"},
        {"role": "user", "content": "\u3000ideographic space and nbsp\u00a0"},
    ],
    "empty_contents": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
    ],
    "second_system_mid_conversation": [
        SYSTEM,
        {"role": "user", "content": "First."},
        {"role": "system", "content": "A later system note."},
        {"role": "user", "content": "Second."},
    ],
    "unicode_and_newlines": [
        {"role": "user", "content": "Café 😀 中文\nline two\n\nline four"},
        {"role": "assistant", "content": "Ça va? ✓"},
        {"role": "user", "content": "Braces {{ x }} and {% raw %} stay text."},
    ],
}
DATE = "05 Mar 2025"


def transformers_environment():
    """The jinja2 environment of transformers' apply_chat_template (without its generation tracker, which
    only matters for return_assistant_tokens_mask)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, text, messages, add_generation_prompt, date_string):
    kwargs = {"bos_token": BOS, "eos_token": EOS}
    if date_string is not None:
        kwargs["date_string"] = date_string
    return env.from_string(text).render(
        messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **kwargs
    )


def transformers_renderer():
    """apply_chat_template of a PreTrainedTokenizerFast with the same special tokens, or None."""
    try:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        return None, None
    import transformers

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), bos_token=BOS, eos_token=EOS)

    def apply(text, messages, add_generation_prompt, date_string):
        kwargs = {} if date_string is None else {"date_string": date_string}
        return tok.apply_chat_template(
            messages, chat_template=text, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )

    return apply, transformers.__version__


def main():
    env = transformers_environment()
    apply, transformers_version = transformers_renderer()
    templates = []
    for name, file, source in TEMPLATES:
        text = (FIXTURES / file).read_text(encoding="utf-8")
        # The 3.2 template's default date is today's (strftime_now): only explicit dates are golden. The
        # 3.1 template's default is a fixed string, so its cases run both ways.
        dates = [DATE] if name == "llama3.2" else [None] if name == "llama3.0" else [None, DATE]
        cases = []
        for conversation, messages in CONVERSATIONS.items():
            for date_string in dates:
                for add_generation_prompt in (False, True):
                    expected = render(env, text, messages, add_generation_prompt, date_string)
                    if apply is not None:
                        reference = apply(text, messages, add_generation_prompt, date_string)
                        assert reference == expected, (name, conversation, reference, expected)
                    cases.append(
                        {
                            "conversation": conversation,
                            "date_string": date_string,
                            "add_generation_prompt": add_generation_prompt,
                            "messages": messages,
                            "expected": expected,
                        }
                    )
        templates.append({"name": name, "file": file, "source": source, "cases": cases})

    golden = {
        "generator": "scripts/gen_chat_golden.py",
        "jinja2": jinja2.__version__,
        "transformers_checked": transformers_version,
        "bos_token": BOS,
        "templates": templates,
    }
    OUT.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    count = sum(len(t["cases"]) for t in templates)
    checked = f", each checked against transformers {transformers_version}" if apply else ""
    print(f"wrote {OUT.relative_to(REPO)}: {count} cases{checked}")


if __name__ == "__main__":
    main()
