#!/usr/bin/env python3
"""Writes tests/fixtures/gguf_tokenizer/*.json: token ids of llama.cpp's llama-tokenize for GGUF vocabularies,
which qllm's GGUF tokenizer must reproduce exactly. Run by scripts/gen_gguf_tokenizer_fixtures.sh (which
builds llama-tokenize and sets PYTHONPATH to llama.cpp's gguf-py); see there for the command.

Four vocabularies, each tokenized on a list of tricky strings and on the whole WikiText-2 test text (stored
as the count, the SHA-256 of the ids as little-endian uint32 and the first ids):
  smollm.json     SmolLM2-135M-Instruct's GGUF (tokenizer.ggml.model gpt2, pre "smollm"), from ../shared
  gpt2.json       the same vocabulary with pre "gpt-2" (a vocab-only GGUF written here)
  llama_bpe.json  Llama 3's tokenizer.json (../shared/tokenizers/llama3) as a vocab-only GGUF, pre "llama-bpe",
                  built as llama.cpp's convert_hf_to_gguf.py builds it (added special tokens are control)
  spm.json        a tiny SentencePiece BPE model trained here on the start of the WikiText-2 test text,
                  written as a vocab-only GGUF (tokenizer.ggml.model llama); the fixture holds its vocabulary

With --compare-random N --qllm BIN it then also compares `qllm tokenize` with llama-tokenize on N random
texts of 30,000 characters for each of the four vocabularies (nothing is written; exit status 1 on a mismatch).
"""

import argparse
import hashlib
import json
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import sentencepiece as spm

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "gguf_tokenizer"
SMOLLM = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA3_JSON = "tokenizers/llama3/tokenizer.json"
WIKITEXT = "data/wikitext-2-raw-test.txt"
FIRST_IDS = 1000
SPM_TRAINING_BYTES = 300_000
SPM_VOCAB_SIZE = 1200

TRICKY = [
    "Hello, world",
    "Hello world! How's it going? I'm fine, you're great, we've done it, they'll see, he'd go.",
    "HOW'S IT GOING? I'M FINE. YOU'RE, WE'VE, THEY'LL, HE'D",
    "'s 't 're 've 'm 'll 'd ' s' 'S 'T 'RE 'Ll rock'n'roll o'clock",
    "1234567890 12 345 6789 3.14159 1,000,000 2024-12-05 0x1F abc123def 4you R2D2 3rd 21st",
    "a  b   c\t\td\n\ne \r\n f   \n  g    ",
    "   leading spaces",
    "trailing spaces   ",
    "\n\n\n",
    " ",
    "x",
    "naïve café résumé Ångström über straße ÆØÅ æøå",
    "你好，世界！这是一个测试。日本語のテキスト、カタカナ。한국어 텍스트",
    "I ❤️ 🦙 and 🤖! 👨‍👩‍👧‍👦 🇫🇷 ✨✨",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|><|im_start|> <|im_start| |im_end|> <|endoftext|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<s>Hello</s> <unk> <|user|> a<|im_end|>b",
    "٠١٢٣٤٥ ①②③ Ⅻ ½ ¾ ²³ 𝟙𝟚𝟛 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Привет мир! Γειά σου κόσμε. שלום עולם. مرحبا بالعالم",
    "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))",
    "...!!!???---___***''' \"quoted\" (parens) [brackets] {braces} <angle> @#$%^&*~`|\\",
    "e\u0301 a\u0300 n\u0303 \u0915\u093f \u0e01\u0e34",
    "a\u00a0b\u2009c\u3000d\u2028e\u0085f\u180eg\u200bh",
    "a\U0001123fb x\u1c89y z\u0378w \U000e0001 \U0010fffd",
    # Letters of Unicode 16 (HF's Oniguruma knows them, llama.cpp's tables do not): "'s" is no contraction.
    "\ua7cd's \u1c89's \ua7db's",
    "a\x01b\x7fc\x1bd",
    # Bytes without a token in SmolLM2's vocabulary (0x14, 0x06, 0xF1): dropped, but only after merging.
    " \x14, >\x06' x\x14y \U00050000a",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "line1\nline2\r\nline3\rline4\n \n",
    " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 ) ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa !!!!!!!!!!!!!!!!!!!!!!!!!!!!!! 00000000000",
    "\t leading tab and  double  spaces \t\n",
]
# Strings also tokenized with special tokens added (BOS / EOS as the vocabulary asks).
WITH_SPECIAL = ["Hello, world", " = Valkyria Chronicles III = \n", "<|im_start|>user\nHi<|im_end|>\n"]


def llama_tokenize(binary, gguf_path, text, add_bos):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        prompt = f.name
    args = [binary, "-m", str(gguf_path), "-f", prompt, "--ids", "--no-escape", "--log-disable"]
    if not add_bos:
        args.append("--no-bos")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    Path(prompt).unlink()
    return json.loads(out.strip().splitlines()[-1])


def wikitext_fixture(ids):
    digest = hashlib.sha256(b"".join(struct.pack("<I", i) for i in ids)).hexdigest()
    return {"file": WIKITEXT, "count": len(ids), "sha256_u32le": digest, "first_ids": ids[:FIRST_IDS]}


def write_vocab_gguf(path, vocab):
    """A vocab-only GGUF (general.architecture llama, no tensors): what llama-tokenize needs."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(vocab["model"])
    if "pre" in vocab:
        w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    if "scores" in vocab:
        w.add_token_scores(vocab["scores"])
    w.add_token_types(vocab["token_type"])
    if "merges" in vocab:
        w.add_token_merges(vocab["merges"])
    for key, add in [("bos_id", w.add_bos_token_id), ("eos_id", w.add_eos_token_id),
                     ("unk_id", w.add_unk_token_id), ("pad_id", w.add_pad_token_id),
                     ("add_bos_token", w.add_add_bos_token), ("add_eos_token", w.add_add_eos_token),
                     ("add_space_prefix", w.add_add_space_prefix)]:
        if key in vocab:
            add(vocab[key])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()


def read_gguf_vocab(path):
    r = gguf.GGUFReader(str(path))

    def scalar(key):
        f = r.fields.get(key)
        if f is None:
            return None
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode() for i in f.data]

    tt = r.fields["tokenizer.ggml.token_type"]
    vocab = {
        "model": scalar("tokenizer.ggml.model"),
        "pre": scalar("tokenizer.ggml.pre"),
        "tokens": strings("tokenizer.ggml.tokens"),
        "token_type": [int(tt.parts[i][0]) for i in tt.data],
        "merges": strings("tokenizer.ggml.merges"),
    }
    for key, name in [("bos_id", "bos_token_id"), ("eos_id", "eos_token_id"), ("unk_id", "unknown_token_id"),
                      ("pad_id", "padding_token_id"), ("add_bos_token", "add_bos_token"),
                      ("add_space_prefix", "add_space_prefix")]:
        value = scalar("tokenizer.ggml." + name)
        if value is not None:
            vocab[key] = value
    return vocab


def llama3_vocab(tokenizer_json):
    """convert_hf_to_gguf.py's gpt2 vocabulary: added special tokens control, other added tokens user-defined."""
    t = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    by_id = {i: tok for tok, i in t["model"]["vocab"].items()}
    added = {a["id"]: a for a in t["added_tokens"]}
    by_id.update({i: a["content"] for i, a in added.items()})
    tokens, types = [], []
    for i in range(max(by_id) + 1):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL if i not in added else
                         gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in t["model"]["merges"]]
    return {"model": "gpt2", "pre": "llama-bpe", "tokens": tokens, "token_type": [int(x) for x in types],
            "merges": merges, "bos_id": 128000, "eos_id": 128009, "add_bos_token": True}


def spm_vocab(training_text, workdir):
    """A tiny SentencePiece BPE model, as convert_hf_to_gguf.py's _create_vocab_sentencepiece writes it."""
    corpus = workdir / "spm_corpus.txt"
    corpus.write_text(training_text, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(workdir / "spm"), vocab_size=SPM_VOCAB_SIZE, model_type="bpe",
        byte_fallback=True, character_coverage=0.9995, num_threads=1, user_defined_symbols=["<|user|>", "<|im_end|>"],
        split_digits=True, max_sentence_length=100000, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(workdir / "spm.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(gguf.TokenType.UNKNOWN if sp.is_unknown(i) else gguf.TokenType.CONTROL if sp.is_control(i) else
                     gguf.TokenType.UNUSED if sp.is_unused(i) else gguf.TokenType.BYTE if sp.is_byte(i) else
                     gguf.TokenType.USER_DEFINED if tokens[-1] in ("<|user|>", "<|im_end|>") else
                     gguf.TokenType.NORMAL)
    # Scores as float32, as GGUF stores them.
    scores = [struct.unpack("<f", struct.pack("<f", s))[0] for s in scores]
    return {"model": "llama", "tokens": tokens, "scores": scores, "token_type": [int(x) for x in types],
            "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(), "add_bos_token": True,
            "add_eos_token": False}


def fixture(binary, gguf_path, source, wikitext):
    cases = [{"text": s, "add_special": False, "ids": llama_tokenize(binary, gguf_path, s, False)} for s in TRICKY]
    cases += [{"text": s, "add_special": True, "ids": llama_tokenize(binary, gguf_path, s, True)}
              for s in WITH_SPECIAL]
    wiki_ids = llama_tokenize(binary, gguf_path, wikitext, False)
    return {"generator": "scripts/gen_gguf_tokenizer_fixtures.sh (llama.cpp llama-tokenize)", "vocab": source,
            "cases": cases, "wikitext": wikitext_fixture(wiki_ids)}


def random_text(rng, size):
    """Text mixing what pre-tokenizers and BPE treat differently: words, digit runs, punctuation, whitespace
    runs (Unicode spaces included), contractions in any case, code points from anywhere (letters and numbers
    newer than Unicode 14, marks, emoji, unassigned, private use, controls), special-token texts."""
    def code_point():
        while True:
            c = rng.choice([rng.randint(0x80, 0x24F), rng.randint(0x370, 0x4FF), rng.randint(0x4E00, 0x9FFF),
                            rng.randint(0x1F300, 0x1F6FF), rng.randint(0x300, 0x36F), rng.randint(0x660, 0x669),
                            rng.randint(0x1C80, 0x1C8F), rng.randint(0xA7C0, 0xA7DF), rng.randint(0x11F00, 0x11F5F),
                            rng.randint(0x1E4D0, 0x1E4FF), rng.randint(0x10D40, 0x10D8F), rng.randint(0xE000, 0xE0FF),
                            rng.randint(0x0, 0x1F), rng.randint(0x80, 0x10FFFF)])
            if not 0xD800 <= c < 0xE000:
                return chr(c)
    kinds = [
        lambda: rng.choice(["the", "The", "THE", "hello", "world", "Tokenizer", "naïve", "straße", "über"]),
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8))),
        lambda: "".join(rng.choice(".,;:!?-_*()[]{}<>/\\|@#$%^&~`\"'+=") for _ in range(rng.randint(1, 5))),
        lambda: "".join(rng.choice([" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\u0085",
                                    "\u180e", "\u200b", "\u2028"]) for _ in range(rng.randint(1, 12))),
        lambda: "'" + rng.choice(["s", "t", "re", "ve", "m", "ll", "d", "S", "T", "RE", "Ve", "M", "LL", "D", "x"]),
        code_point,
        lambda: rng.choice(["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<s>",
                            "</s>", "<unk>", "<|user|>", "<|im_start", "im_end|>"]),
    ]
    weights = [3, 1, 1, 2, 1, 3, 1]
    out, length = [], 0
    while length < size:
        out.append(rng.choices(kinds, weights)[0]())
        length += len(out[-1])
    return "".join(out)


def compare_random(llama_tokenize_binary, qllm, ggufs, texts, workdir):
    """Ids of `qllm tokenize` against llama-tokenize on random texts; returns the number of mismatches."""
    compared = mismatches = 0
    for seed in range(texts):
        text = random_text(random.Random(seed), 30000)
        prompt = workdir / "random.txt"
        prompt.write_text(text, encoding="utf-8")
        for name, path in ggufs.items():
            expected = llama_tokenize(llama_tokenize_binary, path, text, False)
            out = subprocess.run([qllm, "tokenize", "--model", str(path), "--file", str(prompt), "--ids",
                                  "--no-special"], check=True, capture_output=True, text=True).stdout
            ids = json.loads([line for line in out.splitlines() if line.startswith("[")][-1])
            compared += len(expected)
            if ids != expected:
                mismatches += 1
                first = next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
                print(f"random text {seed}, {name}: ids differ from index {first}")
    print(f"random texts: {texts} x {len(ggufs)} vocabularies, {compared} ids compared, {mismatches} mismatching")
    return mismatches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-tokenize", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--compare-random", type=int, default=0, metavar="N",
                    help="also compare `qllm tokenize` (--qllm) with llama-tokenize on N random texts")
    ap.add_argument("--qllm", help="the qllm binary, for --compare-random")
    args = ap.parse_args()
    shared = Path(args.shared)
    wikitext = (shared / WIKITEXT).read_text(encoding="utf-8")
    OUT.mkdir(parents=True, exist_ok=True)

    def write(name, data):
        (OUT / name).write_text(json.dumps(data, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
        print(f"{OUT.relative_to(REPO)}/{name}: {len(data['cases'])} cases, WikiText-2 {data['wikitext']['count']} ids")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        smollm = shared / SMOLLM
        write("smollm.json", fixture(args.llama_tokenize, smollm, {"gguf": SMOLLM}, wikitext))

        gpt2 = read_gguf_vocab(smollm)
        gpt2["pre"] = "gpt-2"
        write_vocab_gguf(tmp / "gpt2.gguf", gpt2)
        write("gpt2.json", fixture(args.llama_tokenize, tmp / "gpt2.gguf", {"gguf": SMOLLM, "pre": "gpt-2"}, wikitext))

        llama3 = llama3_vocab(shared / LLAMA3_JSON)
        write_vocab_gguf(tmp / "llama3.gguf", llama3)
        source = {"tokenizer_json": LLAMA3_JSON, "pre": "llama-bpe", "bos_id": 128000, "eos_id": 128009,
                  "add_bos_token": True}
        write("llama_bpe.json", fixture(args.llama_tokenize, tmp / "llama3.gguf", source, wikitext))

        vocab = spm_vocab(wikitext[:SPM_TRAINING_BYTES], tmp)
        write_vocab_gguf(tmp / "spm.gguf", vocab)
        write("spm.json", fixture(args.llama_tokenize, tmp / "spm.gguf", vocab, wikitext))

        if args.compare_random:
            ggufs = {"smollm": smollm, "gpt-2": tmp / "gpt2.gguf", "llama-bpe": tmp / "llama3.gguf",
                     "spm": tmp / "spm.gguf"}
            if compare_random(args.llama_tokenize, args.qllm, ggufs, args.compare_random, tmp):
                sys.exit(1)


if __name__ == "__main__":
    main()
