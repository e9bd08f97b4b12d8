#!/usr/bin/env python3
"""Writes tests/fixtures/chat_templates/golden.json: real Hugging Face chat templates rendered over a set of
conversations exactly as transformers' apply_chat_template renders them, for qllm's Jinja interpreter
(src/jinja/) to reproduce byte for byte (tests/cpu/test_jinja_golden.cpp).

The templates are tests/fixtures/chat_templates/<name>.jinja (their sources: README.md there). They are
rendered with jinja2 in the environment transformers builds in transformers/utils/chat_template_utils.py,
_cached_compile_jinja_template (read in transformers 5.25.0, the wheel on PyPI): an
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker,
jinja2.ext.loopcontrols]) with its own `tojson` filter (json.dumps with ensure_ascii=False, indent,
separators, sort_keys) and the globals raise_exception, strftime_now, dict and namespace (a Namespace
refusing underscore-prefixed names). render_jinja_template renders with messages, tools=None,
documents=None, add_generation_prompt and the tokenizer's special tokens (bos_token, eos_token; a token that
is None is not passed) plus extra kwargs (date_string). The AssistantTracker extension only adds the
{% generation %} tag, which none of these templates uses. When transformers is importable, every case is
also rendered by apply_chat_template itself and must match.

A case whose template raises (raise_exception, e.g. Gemma or Mistral on a system message or roles that do
not alternate) records the error message instead of an output.

    pip install jinja2 [transformers]
    python3 scripts/gen_jinja_golden.py
"""

import json
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "chat_templates"
OUT = FIXTURES / "golden.json"

LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
# (name, bos_token, eos_token, the date_string values to render with; None: not passed)
TEMPLATES = [
    ("llama3.0", *LLAMA3, [None]),
    ("llama3.1", *LLAMA3, [None, "05 Mar 2025"]),
    # 3.2's default date is today's (strftime_now): only explicit dates are golden.
    ("llama3.2", *LLAMA3, ["05 Mar 2025", "26 Jul 2024"]),
    ("smollm2", "<|im_start|>", "<|im_end|>", [None]),
    ("qwen2.5", None, "<|im_end|>", [None]),
    ("mistral-v0.1", "<s>", "</s>", [None]),
    ("mistral-v0.3", "<s>", "</s>", [None]),
    ("gemma-2", "<bos>", "<eos>", [None]),
    ("phi-3-mini", "<s>", "<|endoftext|>", [None]),
    ("phi-3.5-mini", "<s>", "<|endoftext|>", [None]),
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
    "three_exchanges": [
        SYSTEM,
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three"},
        {"role": "assistant", "content": "Four"},
        {"role": "user", "content": "Five"},
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
    "empty_user": [{"role": "user", "content": ""}],
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
    "special_characters": [
        {"role": "system", "content": "Quotes ' \" and backslashes \\ \\n and tabs\tand a bell \u0007."},
        {"role": "user", "content": "<|im_start|> <s> [INST] markup-looking text </s>\r\nCRLF"},
    ],
    "non_alternating": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second, without an answer between."},
    ],
    "tool_result": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": "{\"temp\": 20, \"unit\": \"°C\"}"},
    ],
    "assistant_first": [
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "Fine."},
    ],
}


def transformers_environment():
    """The jinja2 environment of transformers' _cached_compile_jinja_template (without its generation
    tracker, which only adds the {% generation %} tag)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers overrides the builtin tojson, which would escape HTML characters
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"underscore-prefixed namespace attribute {name!r}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


def template_kwargs(bos, eos, date_string):
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    if date_string is not None:
        kwargs["date_string"] = date_string
    return kwargs


def render(template, messages, add_generation_prompt, kwargs):
    """("ok", text) or ("error", the TemplateError message)."""
    try:
        text = template.render(
            messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **kwargs
        )
        return "ok", text
    except jinja2.exceptions.TemplateError as e:
        return "error", str(e)


def transformers_renderer():
    """apply_chat_template of a PreTrainedTokenizerFast, or None when transformers is not installed."""
    try:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        return None, None
    import transformers

    def apply(text, messages, add_generation_prompt, bos, eos, date_string):
        tokens = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), **tokens)
        kwargs = {} if date_string is None else {"date_string": date_string}
        try:
            out = tok.apply_chat_template(
                messages, chat_template=text, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
            )
            return "ok", out
        except jinja2.exceptions.TemplateError as e:
            return "error", str(e)

    return apply, transformers.__version__


def main():
    env = transformers_environment()
    apply, transformers_version = transformers_renderer()
    templates = []
    for name, bos, eos, dates in TEMPLATES:
        file = f"{name}.jinja"
        text = (FIXTURES / file).read_text(encoding="utf-8")
        template = env.from_string(text)
        cases = []
        for conversation, messages in CONVERSATIONS.items():
            for date_string in dates:
                for add_generation_prompt in (False, True):
                    kind, result = render(template, messages, add_generation_prompt, template_kwargs(bos, eos, date_string))
                    if apply is not None:
                        reference = apply(text, messages, add_generation_prompt, bos, eos, date_string)
                        assert reference == (kind, result), (name, conversation, reference, result)
                    case = {
                        "conversation": conversation,
                        "date_string": date_string,
                        "add_generation_prompt": add_generation_prompt,
                    }
                    case["expected" if kind == "ok" else "error"] = result
                    cases.append(case)
        templates.append({"name": name, "file": file, "bos_token": bos, "eos_token": eos, "cases": cases})

    golden = {
        "generator": "scripts/gen_jinja_golden.py",
        "jinja2": jinja2.__version__,
        "transformers_checked": transformers_version,
        "conversations": CONVERSATIONS,
        "templates": templates,
    }
    OUT.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    count = sum(len(t["cases"]) for t in templates)
    errors = sum(1 for t in templates for c in t["cases"] if "error" in c)
    checked = f", each checked against transformers {transformers_version}" if apply else ""
    print(f"wrote {OUT.relative_to(REPO)}: {count} cases ({errors} raise){checked}")


if __name__ == "__main__":
    main()
