#!/usr/bin/env python3
"""Writes a Llama checkpoint made by `qllm synth` (safetensors + config.json + tokenizer.json) as an F16 GGUF
that llama.cpp loads, so that llama-bench measures the same model as `qllm bench` in the same call.

Run on the device (scripts/gpu_check.sh), where torch and llama.cpp's source (its gguf-py) are present:
  synth_to_gguf.py MODEL_DIR OUT.gguf --gguf-py build/llama.cpp/gguf-py
llama.cpp's own converter refuses the synthetic tokenizer (it only knows the pre-tokenizers of real models
by hash), so this does what it does for a Llama model: the llama.* keys, a gpt2 vocabulary, the Q and K rows
permuted to llama.cpp's rope layout, rope_freqs for llama3 scaling, tensors by llama.cpp's names.
"""
import argparse
import json
import math
import sys
from pathlib import Path


def permute(w, n_head):
    """llama.cpp's rope layout of Q/K rows (convert_hf_to_gguf.py LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(config, head_dim):
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return None
    base = config.get("rope_theta", 10000.0)
    factor = scaling.get("factor", 8.0)
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old_len = scaling.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_len / low, old_len / high
    factors = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (base ** (i / head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return factors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py folder")
    args = ap.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf  # noqa: E402
    import numpy as np  # noqa: E402
    import torch  # noqa: E402
    from safetensors.torch import load_file  # noqa: E402

    d = Path(args.model_dir)
    config = json.loads((d / "config.json").read_text())
    tok = json.loads((d / "tokenizer.json").read_text())
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim", hidden // heads)
    layers = config["num_hidden_layers"]

    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name("qllm synthetic")
    w.add_block_count(layers)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(config.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_vocab_size(config["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    vocab = dict(tok["model"]["vocab"])
    specials = set()
    for t in tok.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        if t.get("special"):
            specials.add(t["id"])
    tokens = ["[PAD%d]" % i for i in range(config["vocab_size"])]
    types = [gguf.TokenType.UNUSED] * config["vocab_size"]
    for text, i in vocab.items():
        if i < len(tokens):
            tokens[i] = text
            types[i] = gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(config.get("bos_token_id", 0))
    w.add_eos_token_id(config.get("eos_token_id", 0) if not isinstance(config.get("eos_token_id"), list)
                       else config["eos_token_id"][0])

    tensors = {}
    for f in sorted(d.glob("*.safetensors")):
        tensors.update(load_file(str(f)))

    def add(name, t, f32=False):
        a = t.to(torch.float32 if f32 else torch.float16).numpy()
        w.add_tensor(name, np.ascontiguousarray(a))

    factors = llama3_rope_factors(config, head_dim)
    if factors is not None:
        w.add_tensor("rope_freqs.weight", np.asarray(factors, dtype=np.float32))
    add("token_embd.weight", tensors["model.embed_tokens.weight"])
    for i in range(layers):
        p = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", tensors[p + "input_layernorm.weight"], f32=True)
        add(f"blk.{i}.attn_q.weight", permute(tensors[p + "self_attn.q_proj.weight"], heads))
        add(f"blk.{i}.attn_k.weight", permute(tensors[p + "self_attn.k_proj.weight"], kv_heads))
        add(f"blk.{i}.attn_v.weight", tensors[p + "self_attn.v_proj.weight"])
        add(f"blk.{i}.attn_output.weight", tensors[p + "self_attn.o_proj.weight"])
        add(f"blk.{i}.ffn_norm.weight", tensors[p + "post_attention_layernorm.weight"], f32=True)
        add(f"blk.{i}.ffn_gate.weight", tensors[p + "mlp.gate_proj.weight"])
        add(f"blk.{i}.ffn_up.weight", tensors[p + "mlp.up_proj.weight"])
        add(f"blk.{i}.ffn_down.weight", tensors[p + "mlp.down_proj.weight"])
    add("output_norm.weight", tensors["model.norm.weight"], f32=True)
    if "lm_head.weight" in tensors:
        add("output.weight", tensors["lm_head.weight"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{args.out}: {layers} layers, hidden {hidden}, vocab {config['vocab_size']}")


if __name__ == "__main__":
    main()
