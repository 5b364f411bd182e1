#!/usr/bin/env python3
"""make-kquant-fixture.py — known-answer fixture for the K-quants (Q4_K, Q5_K, Q6_K):
tests/fixtures/kquant/kquant.bin, read by tests/unit/test_kquant.c.

The expected float32 values come from gguf-py's numpy dequantizers (gguf.quants.dequantize,
llama.cpp's own Python package from PyPI), an implementation independent of ours. gguf-py
has no K-quant quantizer, so the blocks are:
  kind 0: random-but-valid blocks — random bytes with the f16 super-block scales (d, dmin)
          replaced by finite values (normal of either sign, zero, subnormal), 6 per type;
  kind 1: blocks of OUR quantizer on the test's fixed inputs, read from the file that
          `test_kquant --emit-ours FILE` writes (inputs + our bytes), 4 per type.

usage (venv with numpy only, no torch):
  python3 -m venv /tmp/kq && /tmp/kq/bin/pip install gguf numpy
  BUILD/unit_test_kquant --emit-ours /tmp/ours.bin             # BUILD = the cmake build folder
  /tmp/kq/bin/python tools/make-kquant-fixture.py --ours /tmp/ours.bin -o tests/fixtures/kquant/kquant.bin

File format (little-endian): "KQFX", u32 version 1, u32 n_sections; per section: u32 ggml
type (12 Q4_K, 13 Q5_K, 14 Q6_K), u32 kind, u32 n_blocks, [kind 1: f32 input[n_blocks*256]],
u8 blocks[n_blocks*block_bytes], f32 expected[n_blocks*256]. Deterministic (seed 1234).
"""
import argparse, struct, sys
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

TYPES = {12: (Q.Q4_K, 144, [0, 2]), 13: (Q.Q5_K, 176, [0, 2]), 14: (Q.Q6_K, 210, [208])}


def deq(gt, blocks):
    qt, bb, _ = TYPES[gt]
    out = gguf.quants.dequantize(blocks.reshape(-1, bb), qt)
    return np.ascontiguousarray(out, dtype=np.float32).reshape(-1)


def random_blocks(rng, gt, n):
    qt, bb, scale_offs = TYPES[gt]
    b = rng.integers(0, 256, size=(n, bb), dtype=np.uint8)
    specials = [0.0, -0.0, 3.0e-6, -2.5e-7]  # zero, negative zero, f16 subnormals
    for i in range(n):
        for k, off in enumerate(scale_offs):
            if i < len(specials) and k == i % len(scale_offs):
                v = specials[i]
            else:
                v = float(rng.uniform(1e-3, 2.0)) * (1 if rng.random() < 0.7 else -1)
            b[i, off:off + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", help="file written by test_kquant --emit-ours")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(1234)
    sections = []
    for gt in (12, 13, 14):
        b = random_blocks(rng, gt, 6)
        sections.append((gt, 0, 6, None, b, deq(gt, b)))
    if a.ours:
        raw = open(a.ours, "rb").read()
        magic, ns = struct.unpack_from("<II", raw, 0)
        if magic != 0x4E49514B:
            sys.exit("bad --ours file")
        pos = 8
        for _ in range(ns):
            gt, nb = struct.unpack_from("<II", raw, pos)
            pos += 8
            bb = TYPES[gt][1]
            x = np.frombuffer(raw, dtype="<f4", count=nb * 256, offset=pos)
            pos += nb * 256 * 4
            b = np.frombuffer(raw, dtype=np.uint8, count=nb * bb, offset=pos).copy()
            pos += nb * bb
            y = deq(gt, b)
            err = np.abs(y.astype(np.float64) - x)
            print(f"ours {TYPES[gt][0].name}: max |gguf dequant - input| {err.max():.3g}, "
                  f"rms {np.sqrt((err ** 2).mean()):.3g}")
            sections.append((gt, 1, nb, x, b, y))
    with open(a.out, "wb") as f:
        f.write(struct.pack("<4sII", b"KQFX", 1, len(sections)))
        for gt, kind, nb, x, b, y in sections:
            f.write(struct.pack("<III", gt, kind, nb))
            if kind:
                f.write(np.asarray(x, dtype="<f4").tobytes())
            f.write(b.tobytes())
            f.write(np.asarray(y, dtype="<f4").tobytes())
    from importlib.metadata import version
    print(f"wrote {a.out}: {len(sections)} sections (gguf {version('gguf')}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
