#!/usr/bin/env python3
"""gguf-check.py — checks a GGUF written by `moescope convert` with llama.cpp's own Python
reader (the `gguf` package from PyPI) against the safetensors model it came from.

usage: tools/gguf-check.py FILE.gguf MODEL_DIR     (venv: python3 -m venv /tmp/venv-gguf &&
                                                    /tmp/venv-gguf/bin/pip install gguf numpy)
Prints the metadata, then for every tensor: the HF source, the max |gguf - source| after
gguf.quants.dequantize (Q/K rows of arch llama un-permuted as llama.cpp permutes them; gpt-oss
experts split / transposed and DeepSeek attn_k_b / attn_v_b cut from kv_b_proj as llama.cpp's
convert_hf_to_gguf.py does, written here independently of moescope's C code), and
for Q8_0 whether the bytes equal gguf.quants.quantize of the source (Q4_K/Q5_K/Q6_K: within
moescope's quantizer bound per sub-block, see kernels/krn_kquant.h). Exit 1 on a mismatch
beyond the type's bound. Not needed by `make test`.
"""
import json, struct, sys
import numpy as np
import gguf
from gguf import GGUFReader, GGMLQuantizationType as Q

def load_st(d):
    out = {}
    import os
    files = ["model.safetensors"]
    if not os.path.exists(os.path.join(d, files[0])):
        files = sorted(set(json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"].values()))
    for fn in files:
        b = open(os.path.join(d, fn), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__": continue
            s, e = v["data_offsets"]
            raw = b[8 + n + s: 8 + n + e]
            dt = v["dtype"]
            if dt == "BF16":
                a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                a = np.frombuffer(raw, {"F32": np.float32, "F16": np.float16}[dt]).astype(np.float32)
            out[k] = a.reshape(v["shape"])
    return out

def main():
    path, d = sys.argv[1], sys.argv[2]
    r = GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("tokenizer.ggml.") and f.name not in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
            meta[f.name] = f"[{len(f.data)} items]" if f.types[0] == gguf.GGUFValueType.ARRAY else f.parts[f.data[0]][0]
            continue
        v = f.parts[f.data[0]]
        meta[f.name] = bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v.tolist()[0]
    for k, v in meta.items(): print(f"  {k} = {v}")
    cfg = json.load(open(f"{d}/config.json"))
    st = load_st(d)
    arch = meta["general.architecture"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    mix = cfg["model_type"] == "mixtral"
    oai = arch == "gpt-oss"
    simple = {"attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight",
              "attn_k.weight": "self_attn.k_proj.weight", "attn_v.weight": "self_attn.v_proj.weight",
              "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
              "attn_v.bias": "self_attn.v_proj.bias", "attn_output.bias": "self_attn.o_proj.bias",
              "attn_output.weight": "self_attn.o_proj.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
              "post_attention_norm.weight": "post_attention_layernorm.weight", "attn_sinks.weight": "self_attn.sinks",
              "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
              "attn_q_a.weight": "self_attn.q_a_proj.weight", "attn_q_a_norm.weight": "self_attn.q_a_layernorm.weight",
              "attn_q_b.weight": "self_attn.q_b_proj.weight", "attn_kv_a_mqa.weight": "self_attn.kv_a_proj_with_mqa.weight",
              "attn_kv_a_norm.weight": "self_attn.kv_a_layernorm.weight", "attn_kv_b.weight": "self_attn.kv_b_proj.weight",
              "ffn_gate_inp.weight": "mlp.router.weight" if oai else "block_sparse_moe.gate.weight" if mix else "mlp.gate.weight",
              "ffn_gate_inp.bias": "mlp.router.bias", "exp_probs_b.bias": "mlp.gate.e_score_correction_bias",
              "ffn_gate_inp_shexp.weight": "mlp.shared_expert_gate.weight",
              "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}
    def src(name):
        if name == "token_embd.weight": return st["model.embed_tokens.weight"]
        if name == "output_norm.weight": return st["model.norm.weight"]
        if name == "output.weight": return st["lm_head.weight"]
        _, l, part = name.split(".", 2)
        p = f"model.layers.{l}."
        if part in simple:
            k = p + simple[part]
            if k not in st and part == "ffn_gate_inp.weight": k = p + "mlp.gate.weight"
            return st[k]
        if part.endswith("_shexp.weight"):  # Qwen2-MoE mlp.shared_expert.*, DeepSeek mlp.shared_experts.*
            proj = part.split("_")[1] + "_proj.weight"
            k = p + "mlp.shared_expert." + proj
            return st[k if k in st else p + "mlp.shared_experts." + proj]
        if part in ("attn_k_b.weight", "attn_v_b.weight"):  # newer llama.cpp's split of kv_b_proj
            nope, v = cfg["qk_nope_head_dim"], cfg["v_head_dim"]
            kv = st[p + "self_attn.kv_b_proj.weight"].reshape(nh, nope + v, -1)
            return kv[:, :nope, :].transpose(0, 2, 1) if part == "attn_k_b.weight" else kv[:, nope:, :]
        if oai:  # gpt-oss packed experts: gate/up interleaved by column, x @ W layout
            gu, gub = st[p + "mlp.experts.gate_up_proj"], st[p + "mlp.experts.gate_up_proj_bias"]
            return {"ffn_gate_exps.weight": lambda: gu[:, :, 0::2].transpose(0, 2, 1),
                    "ffn_up_exps.weight": lambda: gu[:, :, 1::2].transpose(0, 2, 1),
                    "ffn_down_exps.weight": lambda: st[p + "mlp.experts.down_proj"].transpose(0, 2, 1),
                    "ffn_gate_exps.bias": lambda: gub[:, 0::2], "ffn_up_exps.bias": lambda: gub[:, 1::2],
                    "ffn_down_exps.bias": lambda: st[p + "mlp.experts.down_proj_bias"]}[part]()
        w = {"ffn_gate_exps.weight": ("w1", "gate_proj", 0), "ffn_up_exps.weight": ("w3", "up_proj", 1),
             "ffn_down_exps.weight": ("w2", "down_proj", 2)}[part]
        if p + "mlp.experts.gate_up_proj" in st:
            if w[2] == 2: return st[p + "mlp.experts.down_proj"]
            gu = st[p + "mlp.experts.gate_up_proj"]; I = gu.shape[1] // 2
            return gu[:, :I] if w[2] == 0 else gu[:, I:]
        E = cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts")
        ks = [f"{p}block_sparse_moe.experts.{e}.{w[0]}.weight" for e in range(E)]
        if ks[0] not in st: ks = [f"{p}mlp.experts.{e}.{w[1]}.weight" for e in range(E)]
        return np.stack([st[k] for k in ks])
    def permute(w, n_head):  # convert_hf_to_gguf.py LlamaModel.permute
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    bad = 0
    for t in r.tensors:
        s = src(t.name)
        if arch == "llama" and t.name.endswith("attn_q.weight"): s = permute(s, nh)
        if arch == "llama" and t.name.endswith("attn_k.weight"): s = permute(s, nkv)
        s = np.ascontiguousarray(s)
        g = gguf.quants.dequantize(t.data, t.tensor_type).reshape(s.shape)
        diff = float(np.abs(g.astype(np.float64) - s).max())
        if t.tensor_type == Q.Q8_0:
            blocks = s.reshape(-1, 32).astype(np.float64)
            bound = float((np.abs(blocks).max(1) / 127 * (0.5 + 127 * 2.0 ** -11)).max()) + 1e-12
            same = np.array_equal(np.asarray(t.data).view(np.uint8).ravel(), gguf.quants.quantize(s.astype(np.float32), Q.Q8_0).view(np.uint8).ravel())
            ok = diff <= bound
            note = f"bound {bound:.3g}, bytes == gguf.quants.quantize: {same}"
        elif t.tensor_type in (Q.Q4_K, Q.Q5_K, Q.Q6_K):  # moescope's quantizer (kernels/krn_kquant.h)
            sub = 16 if t.tensor_type == Q.Q6_K else 32
            xs, es = s.reshape(-1, sub).astype(np.float64), np.abs(g.astype(np.float64) - s).reshape(-1, sub)
            if t.tensor_type == Q.Q6_K:  # one step, step <= max|x|/32 * (1 + 1/128)
                lim = np.abs(xs).max(1) / 31
            else:  # 0.2 of the span max(0, max x) - min(0, min x)
                lim = 0.2 * (np.maximum(xs.max(1), 0) - np.minimum(xs.min(1), 0))
            ok = bool((es <= lim[:, None] * (1 + 1e-5) + 2e-6 * np.abs(xs).max() + 1e-30).all())
            note = f"sub-block bound, worst err/bound {float((es.max(1) / np.maximum(lim, 1e-30)).max()):.2f}"
        elif t.tensor_type == Q.F16:
            ok = diff <= float(np.abs(s).max()) * 2 ** -11 + 6e-8; note = "f16 rounding"
        else:
            ok = diff == 0.0; note = "exact"
        bad += not ok
        print(f"{t.name:32s} {t.tensor_type.name:5s} {list(t.shape)} max|d|={diff:.3g} ({note}){'' if ok else '  MISMATCH'}")
    print("FAIL" if bad else "OK", f"{len(r.tensors)} tensors")
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
