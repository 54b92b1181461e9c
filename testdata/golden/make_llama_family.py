#!/usr/bin/env python3
"""Random-weight LLaMA-family fixtures with llama.cpp as the reference (see README.md).

For each variant it writes testdata/golden/<variant>/ (config.json + float32 model.safetensors in
Hugging Face layout) and the same weights as a float32 GGUF file in --work, then runs --logits (a
small program against llama.h that prints, per prompt, llama.cpp's logits at every position and its
greedy continuation through the KV cache, with an F32 KV cache) and writes golden.json.

Usage: python3 make_llama_family.py --gguf-py LLAMA_CPP/gguf-py --logits PROGRAM [--work DIR] [--out DIR]
       [VARIANT ...]
PROGRAM is logits.cpp, built as its header says.
Needs numpy only (plus gguf-py from the llama.cpp source tree).
"""
import argparse, importlib.util, json, math, os, struct, subprocess, sys, types
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=320, hidden_size=64,
            intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000.0,
            max_position_embeddings=256, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
            bos_token_id=1, eos_token_id=2, torch_dtype="float32")
VARIANTS = {
    # Llama 3.1's rope_scaling with the original context shrunk so that head_dim 16 has pairs in each
    # regime (kept, blended, divided by factor).
    "llama3-scaled": dict(rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                            high_freq_factor=4.0, original_max_position_embeddings=64)),
    "llama-yarn": dict(rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=64)),
    "llama-linear": dict(rope_scaling=dict(rope_type="linear", factor=2.0)),
    # Qwen2: q/k/v biases and tied embeddings.
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", tie_word_embeddings=True,
                  use_sliding_window=False, sliding_window=None, max_window_layers=2,
                  rope_theta=1000000.0),
    # Mistral: every layer attends to the last 8 keys (the query's own included); the prompts and
    # the greedy runs go past it.
    "mistral-swa": dict(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=8),
}
# llama.cpp applies a sliding window only in its Phi-3 (every layer), Gemma 2 and Cohere 2 graphs; a
# Mistral GGUF converts to its LLaMA graph, which ignores the window. Phi-3's block is Mistral's
# (pre-RMSNorm, rotate-half RoPE over the whole head, SwiGLU, no biases) with q|k|v and gate|up fused,
# so Mistral is written as a Phi-3 GGUF.
GGUF_ARCH = {"llama": "llama", "qwen2": "qwen2", "mistral": "phi3"}
PROMPTS = [(8, [1, 17, 42, 99, 7, 250]), (6, [1] + list(range(30, 60))), (4, [1, 300, 5] * 30)]


def weights(cfg, seed):
    rng = np.random.default_rng(seed)
    H, I, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    D = cfg["head_dim"]
    Q, KV = cfg["num_attention_heads"] * D, cfg["num_key_value_heads"] * D
    rnd = lambda *s: (rng.standard_normal(s) / math.sqrt(s[-1])).astype(np.float32)
    norm = lambda: (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
    w = {"model.embed_tokens.weight": rng.standard_normal((V, H)).astype(np.float32)}
    for i in range(L):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = rnd(Q, H)
        w[p + "self_attn.k_proj.weight"] = rnd(KV, H)
        w[p + "self_attn.v_proj.weight"] = rnd(KV, H)
        if cfg["model_type"] == "qwen2":
            for n, r in (("q", Q), ("k", KV), ("v", KV)):
                w[p + f"self_attn.{n}_proj.bias"] = (0.5 * rng.standard_normal(r)).astype(np.float32)
        w[p + "self_attn.o_proj.weight"] = rnd(H, Q)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = rnd(I, H)
        w[p + "mlp.up_proj.weight"] = rnd(I, H)
        w[p + "mlp.down_proj.weight"] = rnd(H, I)
    w["model.norm.weight"] = norm()
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rnd(V, H)
    return w


def write_hf(folder, cfg, w):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    for n, a in w.items():
        hdr[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    hb = json.dumps(hdr, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for a in w.values():
            f.write(np.ascontiguousarray(a).data)


def llama3_factors(cfg):
    """rope_freqs for llama.cpp: default frequency / scaled frequency, per pair."""
    rs, d = cfg["rope_scaling"], cfg["head_dim"]
    out = []
    for i in range(d // 2):
        f = cfg["rope_theta"] ** (-2 * i / d)
        wl, old = 2 * math.pi / f, rs["original_max_position_embeddings"]
        lo, hi, k = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
        if wl < old / hi:
            out.append(1.0)
        elif wl > old / lo:
            out.append(k)
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append(1 / ((1 - s) / k + s))
    return np.array(out, np.float32)


GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_name(n):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if n in top:
        return top[n]
    _, _, i, rest = n.split(".", 3)
    mod, kind = rest.rsplit(".", 1)
    return f"blk.{i}.{GGUF[mod]}.{kind}"


def interleave(a, heads):
    """HF rotate-half pairs (i, i+d/2) to llama.cpp LLaMA's adjacent pairs (2i, 2i+1)."""
    return a.reshape(heads, 2, a.shape[0] // heads // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def gguf_tensors(cfg, w):
    """The GGUF tensors of w for cfg's llama.cpp architecture."""
    arch, out = GGUF_ARCH[cfg["model_type"]], {}
    for n, a in w.items():
        # llama.cpp's LLaMA pairs adjacent dims; its Qwen2 and Phi-3 rotate halves, as HF does.
        if arch == "llama" and ".q_proj." in n:
            a = interleave(a, cfg["num_attention_heads"])
        if arch == "llama" and ".k_proj." in n:
            a = interleave(a, cfg["num_key_value_heads"])
        out[gguf_name(n)] = a
    if arch == "phi3":
        for i in range(cfg["num_hidden_layers"]):
            b = f"blk.{i}."
            out[b + "attn_qkv.weight"] = np.concatenate([out.pop(b + f"attn_{x}.weight") for x in "qkv"])
            out[b + "ffn_up.weight"] = np.concatenate([out.pop(b + "ffn_gate.weight"), out.pop(b + "ffn_up.weight")])
    return out


def write_gguf(path, cfg, w, gguf):
    arch = GGUF_ARCH[cfg["model_type"]]
    g = gguf.GGUFWriter(path, arch)
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(cfg["hidden_size"])
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(cfg["num_attention_heads"])
    g.add_head_count_kv(cfg["num_key_value_heads"])
    g.add_rope_dimension_count(cfg["head_dim"])
    g.add_rope_freq_base(cfg["rope_theta"])
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_vocab_size(cfg["vocab_size"])
    g.add_file_type(gguf.LlamaFileType.ALL_F32)
    if cfg.get("sliding_window"):
        g.add_sliding_window(cfg["sliding_window"])
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type")
    if kind == "linear":
        g.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        g.add_rope_scaling_factor(rs["factor"])
    elif kind == "yarn":
        g.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        g.add_rope_scaling_factor(rs["factor"])
        g.add_rope_scaling_orig_ctx_len(rs["original_max_position_embeddings"])
    T = gguf.TokenType
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types_ = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256
    toks += [f"\u2581t{i}" for i in range(len(toks), cfg["vocab_size"])]
    types_ += [T.NORMAL] * (len(toks) - len(types_))
    g.add_tokenizer_model("llama")
    g.add_tokenizer_pre("default")
    g.add_token_list(toks)
    g.add_token_scores([-float(i) for i in range(len(toks))])
    g.add_token_types(types_)
    g.add_bos_token_id(1); g.add_eos_token_id(2); g.add_unk_token_id(0)
    if kind == "llama3":
        g.add_tensor("rope_freqs.weight", llama3_factors(cfg))
    for n, a in gguf_tensors(cfg, w).items():
        g.add_tensor(n, np.ascontiguousarray(a))
    g.write_header_to_file(); g.write_kv_data_to_file(); g.write_tensors_to_file(); g.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-py", required=True)
    ap.add_argument("--logits", required=True)
    ap.add_argument("--work", default="/tmp/llama-family")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=HERE, help="where the fixture folders go")
    ap.add_argument("variants", nargs="*", help="the variants to make (default: all)")
    a = ap.parse_args()
    sys.path.insert(0, a.gguf_py)
    for mod in ("sentencepiece", "yaml"):
        if importlib.util.find_spec(mod) is None:
            sys.modules[mod] = m = types.ModuleType(mod)
            m.__getattr__ = lambda name: None
    import gguf
    os.makedirs(a.work, exist_ok=True)
    for k, (name, extra) in enumerate(VARIANTS.items()):
        if a.variants and name not in a.variants:
            continue
        cfg = dict(BASE, **extra)
        w = weights(cfg, a.seed + k)
        out = os.path.join(a.out, name)
        write_hf(out, cfg, w)
        path = os.path.join(a.work, name + ".gguf")
        write_gguf(path, cfg, w, gguf)
        stdin = "".join(f"{n} {' '.join(map(str, ids))}\n" for n, ids in PROMPTS)
        run = subprocess.run([a.logits, path], input=stdin, capture_output=True, text=True, check=True)
        cases = [json.loads(line) for line in run.stdout.splitlines()]
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump({"arch": cfg["model_type"], "reference": "llama.cpp c392e5094, F32 weights and KV cache",
                       "cases": cases}, f, separators=(",", ":"))
        print(name, [c["greedy_ids"] for c in cases])


if __name__ == "__main__":
    main()
