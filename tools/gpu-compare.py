#!/usr/bin/env python3
"""gpu-compare.py — CPU vs GPU run of the same inputs (tools/gpu-check.sh): logits from
`moescope run --dump-logits` (.npy float32 [tokens, vocab]) must agree within BF16 tolerance
(max |diff| <= 1e-2 of the largest |CPU logit|), and the recorded routing (last run of each
trace DB) must pick identical expert sets for every (sequence, position, layer) except
near-ties: CPU router top-k margin (k-th minus (k+1)-th probability, from router_probs at
record level full) below 2e-3. Plain Python (no numpy). Exit 0 ok, 1 mismatch.
usage: gpu-compare.py CPU.npy GPU.npy CPU.db GPU.db"""
import array, ast, sqlite3, struct, sys


def load_npy(path):
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise SystemExit(f"{path}: not a .npy file")
        major = f.read(2)[0]
        hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        hdr = ast.literal_eval(f.read(hlen).decode("latin1"))
        if hdr["descr"] not in ("<f4", "=f4"):
            raise SystemExit(f"{path}: dtype {hdr['descr']}")
        data = array.array("f")
        data.frombytes(f.read())
        return hdr["shape"], data


def routing(db_path):
    db = sqlite3.connect(db_path)
    run = db.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
    sets = {}
    for seq, pos, layer, expert in db.execute(
            "SELECT seq_id, pos, layer, expert FROM routing WHERE run_id = ?", (run,)):
        sets.setdefault((seq, pos, layer), set()).add(expert)
    probs = {}
    for seq, pos, layer, blob in db.execute(
            "SELECT seq_id, pos, layer, probs FROM router_probs WHERE run_id = ?", (run,)):
        if blob:
            a = array.array("f")
            a.frombytes(blob)
            probs[(seq, pos, layer)] = a
    return sets, probs


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    ok = True
    (sc, lc), (sg, lg) = load_npy(sys.argv[1]), load_npy(sys.argv[2])
    if sc != sg:
        print(f"logits shapes differ: {sc} vs {sg}")
        return 1
    big = max(abs(v) for v in lc) or 1.0
    err = max(abs(a - b) for a, b in zip(lc, lg)) / big
    print(f"logits {sc}: max |cpu - gpu| / max |cpu| = {err:.3e} (tolerance 1e-2)")
    ok &= err <= 1e-2
    rc, pc = routing(sys.argv[3])
    rg, _ = routing(sys.argv[4])
    keys = set(rc) | set(rg)
    flips = hard = 0
    for key in sorted(keys):
        a, b = rc.get(key), rg.get(key)
        if a == b:
            continue
        flips += 1
        p = sorted(pc.get(key, []), reverse=True)
        k = len(a or b or ())
        margin = p[k - 1] - p[k] if len(p) > k >= 1 else float("inf")
        if margin >= 2e-3 or a is None or b is None:
            hard += 1
            print(f"  expert sets differ at seq/pos/layer {key}: cpu {sorted(a or [])} gpu {sorted(b or [])} margin {margin:.3g}")
        else:
            print(f"  near-tie at {key} (margin {margin:.2e}): cpu {sorted(a)} gpu {sorted(b)}")
    print(f"routing: {len(keys)} (token, layer) pairs, {flips} expert sets differ, {hard} beyond the near-tie margin")
    ok &= hard == 0 and len(keys) > 0
    print("CPU vs GPU: OK" if ok else "CPU vs GPU: MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
