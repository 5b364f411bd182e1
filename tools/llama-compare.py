#!/usr/bin/env python3
"""llama-compare.py — moescope against llama.cpp on the same GGUF files.

Two checks, both on GGUF files written by `moescope convert`:

1. Fidelity (an independent implementation reading our files): for each model, the logits of
   every position of a fixed id sequence from llama.cpp (llama-cpp-python, logits_all) and
   from `moescope run --ids ... --dump-logits` on the same .gguf; prints max |diff| and the
   logit range, and the top-1 agreement. A converter bug (tensor layout, metadata, Q/K
   permutation, quantisation) shows up here as a large difference or a load failure.
2. Speed (same machine, same run, same thread count): prefill tokens/s (one batch of N) and
   decode tokens/s (one token per call) of llama.cpp vs `moescope bench --record off` rows,
   reported as the ratio moescope / llama.cpp.

Not part of `make test` (needs llama-cpp-python, which builds llama.cpp from source):

    python3 -m venv /tmp/llvenv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/llvenv/bin/pip install llama-cpp-python numpy
    /tmp/llvenv/bin/python tools/llama-compare.py --moescope build/moescope \\
        --model models/tiny-mixtral --model tests/fixtures/hf_qwen2_moe ... [--speed-model DIR]

Each --model is a Hugging Face folder; it is converted to GGUF (--type, default f32) into
--work. --speed-model (e.g. a `moescope synth` preset of ~1 GB) is converted to --speed-type
(default bf16 -> f16 for llama.cpp's CPU path is chosen by the user) and timed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def convert(ms, model, gtype, out):
    sh([ms, "convert", "--model", model, "--to", "gguf", "--type", gtype, "-o", out])


def llama_load(path, n_ctx, threads, logits_all):
    from llama_cpp import Llama
    return Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                 logits_all=logits_all, verbose=False, n_batch=n_ctx, n_ubatch=n_ctx)


def fidelity(ms, model, gtype, work, ids, threads):
    name = os.path.basename(os.path.normpath(model))
    gguf = os.path.join(work, f"{name}.{gtype}.gguf")
    convert(ms, model, gtype, gguf)
    npy = os.path.join(work, f"{name}.{gtype}.npy")
    cfg = json.load(open(os.path.join(model, "config.json")))
    vocab = int(cfg.get("vocab_size", 0))
    ids = [i % vocab for i in ids]
    sh([ms, "run", "--model", gguf, "--ids", ",".join(map(str, ids)), "--record", "off", "--dump-logits", npy,
        "--quiet", "--threads", str(threads)])
    ours = np.load(npy).astype(np.float64)
    try:
        llm = llama_load(gguf, max(64, len(ids)), threads, True)
    except Exception as e:  # noqa: BLE001 - report and go on with the next model
        return {"model": name, "type": gtype, "error": f"llama.cpp cannot load: {e}"}
    llm.reset()
    llm.eval(ids)
    theirs = np.array(llm.scores[: len(ids)], dtype=np.float64)
    d = np.abs(ours - theirs)
    return {"model": name, "arch": cfg.get("model_type"), "type": gtype, "positions": len(ids),
            "max_abs_diff": float(d.max()), "logit_range": float(ours.max() - ours.min()),
            "top1_agree": float(np.mean(ours.argmax(1) == theirs.argmax(1)))}


def speed(ms, model, gtype, work, threads, n_prefill, n_decode):
    gguf = os.path.join(work, f"speed.{gtype}.gguf")
    convert(ms, model, gtype, gguf)
    out = sh([ms, "bench", "--model", gguf, "--prefill", str(n_prefill), "--decode", str(n_decode),
              "--threads", str(threads), "--reps", "3"])
    row = next(line.split() for line in out.splitlines() if line.startswith("off "))
    ms_pf, ms_dec = float(row[1]), float(row[3])
    llm = llama_load(gguf, n_prefill + n_decode + 8, threads, False)
    ids = [(i * 37 + 11) % llm.n_vocab() for i in range(n_prefill)]
    best_pf = best_dec = 0.0
    for _ in range(3):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        best_pf = max(best_pf, n_prefill / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(n_decode):
            llm.eval([(i * 13 + 5) % llm.n_vocab()])
        best_dec = max(best_dec, n_decode / (time.perf_counter() - t0))
    return {"model": model, "type": gtype, "threads": threads,
            "moescope_prefill_tps": ms_pf, "llamacpp_prefill_tps": best_pf, "prefill_ratio": ms_pf / best_pf,
            "moescope_decode_tps": ms_dec, "llamacpp_decode_tps": best_dec, "decode_ratio": ms_dec / best_dec}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moescope", default="build/moescope")
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--type", default="f32")
    ap.add_argument("--speed-model")
    ap.add_argument("--speed-type", default="f16")
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", default="/tmp/llama-compare")
    ap.add_argument("--json", help="also write all results here")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ids = [(i * 7 + 3) for i in range(24)]
    res = {"fidelity": [], "speed": None}
    for m in a.model:
        r = fidelity(a.moescope, m, a.type, a.work, ids, a.threads)
        res["fidelity"].append(r)
        if "error" in r:
            print(f"{r['model']:<22} {r['type']:<5} {r['error']}")
        else:
            print(f"{r['model']:<22} {r['type']:<5} max|ours - llama.cpp| = {r['max_abs_diff']:.3g} "
                  f"(logit range {r['logit_range']:.3g}), top-1 agreement {r['top1_agree']:.3f}")
    if a.speed_model:
        s = speed(a.moescope, a.speed_model, a.speed_type, a.work, a.threads, a.prefill, a.decode)
        res["speed"] = s
        print(f"speed ({s['type']}, {s['threads']} threads): prefill moescope {s['moescope_prefill_tps']:.1f} vs "
              f"llama.cpp {s['llamacpp_prefill_tps']:.1f} tok/s (x{s['prefill_ratio']:.2f}); decode "
              f"{s['moescope_decode_tps']:.1f} vs {s['llamacpp_decode_tps']:.1f} tok/s (x{s['decode_ratio']:.2f})")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    bad = [r for r in res["fidelity"] if "error" in r]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
