#!/usr/bin/env python3
"""Writes the tokenizer golden fixtures (tests/fixtures/tokenizer/*.json) with Hugging Face `tokenizers`.

For each tokenizer of the shared folder: the ids of a varied text set with and without special tokens,
HF's decode of those ids (with and without skip_special_tokens), HF's decode of id sequences that cut
UTF-8 characters, and for the WikiText-2 test text only the id count, the SHA-256 of the ids as
little-endian uint32 and the first 2000 ids (the fixtures stay small; the text itself is not copied).

    pip install tokenizers
    python3 scripts/gen_tokenizer_golden.py [--shared ../shared]
"""

import argparse
import hashlib
import json
import struct
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "fixtures" / "tokenizer"

# (fixture name, tokenizer folder relative to the shared folder)
TOKENIZERS = [
    ("llama3", "tokenizers/llama3"),
    ("proxy-llama-22m", "models/proxy-llama-22m"),
]
WIKITEXT = "data/wikitext-2-raw-test.txt"
WIKITEXT_FIRST_IDS = 2000

TEXTS = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing spaces   ",
    "tabs\tin\t\tbetween\tand a trailing tab\t",
    "line one\nline two\n\nline four\r\nwindows line\r\n",
    "\n\n\n",
    "   \n   \n\t\n",
    "many          spaces           here",
    "trailing newline\n",
    "I'm sure you're right, we'll see. They've gone, she'd said, it's fine.",
    "I'M SURE YOU'RE RIGHT, WE'LL SEE. THEY'VE GONE, IT'S FINE. JOHN'S CAR",
    "Don'T mIx'Ll cAsEs'S",
    "'s 't 're 've 'm 'll 'd",
    "3.14159 2718281828 1234567890123456789012345678901234567890",
    "Numbers: 1, 12, 123, 1234, 12345, 123456, 1234567, 0.5, -42, 1e10, 1,000,000",
    "Phone +1 (555) 123-4567, ISBN 978-3-16-148410-0, 2026-11-21T10:20:30Z",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; }  // axpy",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}',
    "https://example.com/path?query=value&other=1#anchor user@example.org",
    "Café résumé naïve façade coöperate jalapeño Ångström Øresund",
    "Crème brûlée à la française, s'il vous plaît. Ça va?",
    "Straße, Größe, Übermaß, ÄÖÜ äöü ß ẞ",
    "e\u0301 a\u0300 n\u0303 (combining marks)",
    "Ελληνικά: Καλημέρα κόσμε. Русский: Привет, мир! Українська: Ґанок",
    "中文：你好，世界！我们今天学习分词。日本語：こんにちは世界。カタカナ。",
    "한국어: 안녕하세요 세계",
    "العربية: مرحبا بالعالم. ١٢٣ ٤٥٦",
    "हिन्दी: नमस्ते दुनिया। संख्या १२३",
    "ไทย: สวัสดีชาวโลก",
    "Emoji 😀😃😄 👍🏽 🇫🇷 ❤️ ✨",
    "Family 👨\u200d👩\u200d👧\u200d👦 and 🏳️\u200d🌈 and 👩🏽\u200d💻",
    "Math: ∑ᵢ xᵢ² ≤ ∞, ∀ε>0 ∃δ, √2 ≈ 1.414, π ≠ 3, ½ ¾ ⅓",
    "Symbols ©®™ § ¶ † ‡ • … ‰ € £ ¥ ₹ ₿",
    "Odd spaces:\u00a0nbsp\u3000ideographic\u2028line-sep\u2029para\u0085nel\u2009thin\u200bzwsp\u202fnnbsp",
    "Control\x01chars\x07and\x1fmore\x7fdel\x0bvt\x0cff",
    "Long s: \u017fhe'\u017f and Kelvin \u212a and 'ſ 'K",
    # U+180E is whitespace to PCRE2 but not to Oniguruma; the others are letters and numbers assigned
    # after Unicode 14.0 (Kawi, CJK Extension H, Garay digits, Cyrillic TSE): see unicode_delta.h.
    "Mongolian vowel separator: a\u180e'b \u180e'll x\u180e\u180e y",
    "Newer letters: \U00011F04'\U00011F05's \U00031350\U00031351 \u1C89'll digits \U00010D40\U00010D41\U00010D42\U00010D43",
    "hi<|eot_id|>there",
    "<|begin_of_text|>Hello<|end_of_text|>",
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "Text with <|eot_id|> spaced special <|eot_id|><|eot_id|> repeated",
    "Not special: <|eot_id <eot_id|> <|EOT_ID|> <| eot_id |> <|reserved_special_token_5|>",
    "<|eot_id|>",
    "x" * 300,
    "ab" * 200 + " " + "9" * 100,
    "!!!???...,,,;;;:::---___===+++***///\\\\\\|||",
    "   ```python\n   print('hi')\n   ```   ",
    "A sentence. Another one!  Two spaces before this; and a semicolon: done.",
    " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . \n",
]


def byte_token_ids(tok, data: bytes):
    """Ids of the single-byte tokens for `data` (GPT-2 byte-to-unicode stand-ins)."""
    table = bytes_to_unicode()
    return [tok.token_to_id(table[b]) for b in data]


def bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    extra = 0
    table = {}
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


def decode_cases(tok):
    """Id sequences that cut or corrupt UTF-8: HF replaces each maximal invalid subsequence by U+FFFD."""
    sequences = [
        b"\xf0\x9f\x98",  # an emoji missing its last byte, at the end
        b"\xf0\x9f\x98a",  # ... followed by ASCII
        b"\xe2\x82",  # two bytes of the euro sign
        b"\xe2\x82\xac",  # the whole euro sign, one byte per token
        b"\xc3",  # a lone lead byte
        b"\x80\x80",  # lone continuation bytes
        b"\xed\xa0\x80",  # a UTF-16 surrogate, invalid in UTF-8
        b"\xc0\xaf",  # an overlong slash
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xe0\x80\x80",  # overlong
        b"ok\xffok",
    ]
    cases = []
    for data in sequences:
        ids = byte_token_ids(tok, data)
        if None in ids:
            continue
        cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


def golden_for(tok, shared: Path):
    cases = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        cases.append(
            {
                "text": text,
                "ids": ids,
                "ids_with_special_tokens": ids_special,
                "decoded": tok.decode(ids_special, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids_special, skip_special_tokens=True),
            }
        )
    wikitext = (shared / WIKITEXT).read_text(encoding="utf-8")
    ids = tok.encode(wikitext, add_special_tokens=False).ids
    digest = hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()
    return {
        "cases": cases,
        "decode_cases": decode_cases(tok),
        "wikitext": {
            "file": WIKITEXT,
            "count": len(ids),
            "sha256_u32le": digest,
            "first_ids": ids[:WIKITEXT_FIRST_IDS],
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared data folder")
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, folder in TOKENIZERS:
        tok = Tokenizer.from_file(str(args.shared / folder / "tokenizer.json"))
        golden = {
            "tokenizer": folder,
            "generator": f"scripts/gen_tokenizer_golden.py, tokenizers {tokenizers.__version__}",
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            **golden_for(tok, args.shared),
        }
        out = OUT_DIR / f"{name}.json"
        out.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        w = golden["wikitext"]
        print(f"{out.relative_to(REPO)}: {len(golden['cases'])} texts, WikiText-2 {w['count']} ids, "
              f"{out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
