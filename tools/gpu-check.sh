#!/usr/bin/env bash
# gpu-check.sh — the one prepared call for a lent GPU machine (the `device` tool; it starts
# bare). Fits in 8 minutes on an H200: installs what the build needs, builds with the CUDA
# backend forced on (arch 90), runs the gpu-labelled tests (kernels vs CPU references, the
# tiny-mixtral forward and every family -- synthetic models plus the hf_deepseek_v2/v3 and
# hf_gpt_oss fixtures -- vs the CPU engine), the CUDA
# micro-benchmarks, the CLI on both devices (logits of --dump-logits and the recorded
# routing compared: BF16 tolerance, identical expert sets except near-ties; greedy text),
# and a ~1.3B-parameter synthetic model for prefill/decode tokens/s, % of the HBM roofline
# and the probe overhead per record level; the routed-expert GEMMs both ways (own kernels,
# --expert-gemm cublas: bench lines "grouped cublas" / "expert-gemm", a CLI comparison). Every step has its own timeout; the script goes
# on after a failure and ends with a summary. Logs, the bench output and small trace DBs
# go to $OUT (default /tmp/gpu-check-out).
# The GPU machine can fetch nothing (no apt, no network), so the build's -dev packages travel
# with the call: first, HERE (Debian 12, apt works), `bash tools/gpu-deps.sh fetch` (fills the
# git-ignored .deps/ with the .deb files, ~26 MiB), then
#   device tool:  run(command="bash tools/gpu-check.sh", timeout_s=540, carry=[".deps"])
# The step "dependencies" says which path it took: system packages already there, apt
# (scripts/install-deps.sh, when apt-get and the network work), or the carried .deps/
# (tools/gpu-deps.sh use: unpacked into /tmp/moescope-deps, found through pkg-config, RPATH).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
B=build-gpu
TMPD=${TMPDIR:-/tmp}/moescope-gpu-check
mkdir -p "$TMPD"
FAILS="$TMPD/fails"
: >"$FAILS"
step() { echo; echo "=== $* [t=${SECONDS}s]"; }
fail() { echo "FAILED: $*"; echo "$*" >>"$FAILS"; }

main() {
  step "device"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv 2>&1 | head -3
  nvcc --version 2>&1 | tail -1

  step "dependencies"
  local mods="sqlite3 libpcre2-8 cairo libcjson libcrypto libutf8proc"
  if command -v pkg-config >/dev/null && pkg-config --exists $mods 2>/dev/null; then
    echo "dependencies: path taken: the system's packages (pkg-config finds: $mods)"
  elif command -v apt-get >/dev/null && timeout 5 getent hosts deb.debian.org archive.ubuntu.com >/dev/null 2>&1 \
       && timeout 150 bash scripts/install-deps.sh >"$OUT/deps.log" 2>&1; then
    echo "dependencies: path taken: apt (scripts/install-deps.sh)"
  elif ls .deps/*.deb >/dev/null 2>&1; then
    echo "dependencies: path taken: the carried .deps/ ($(ls .deps/*.deb | wc -l) .deb files; no apt or no network)"
    # shellcheck disable=SC1091
    source tools/gpu-deps.sh use >"$OUT/deps.log" 2>&1 || { tail -5 "$OUT/deps.log"; fail "gpu-deps use (see deps.log)"; }
    tail -1 "$OUT/deps.log"
    echo "PKG_CONFIG=${PKG_CONFIG:-} PKG_CONFIG_SYSROOT_DIR=${PKG_CONFIG_SYSROOT_DIR:-} LDFLAGS=${LDFLAGS:-}"
    rm -rf "$B" # LDFLAGS (the RPATH to the carried libraries) only reaches a fresh build dir
  else
    [ -s "$OUT/deps.log" ] && tail -5 "$OUT/deps.log"
    echo "dependencies: no path: pkg-config misses some of $mods, apt/network unusable, no .deps/ carried"
    echo "  (here: bash tools/gpu-deps.sh fetch; then run(..., carry=[\".deps\"]))"
    fail "dependencies (see deps.log)"
  fi

  step "build (CUDA on, sm_90)"
  if ! cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DMOESCOPE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
       -DMOESCOPE_SHARED="$PWD/../shared" >"$OUT/cmake.log" 2>&1; then
    tail -20 "$OUT/cmake.log"; fail "cmake"; return
  fi
  if ! timeout 240 cmake --build "$B" -j "$(nproc)" >"$OUT/build.log" 2>&1; then
    grep -E "error|Error" "$OUT/build.log" | head -30; fail "build"; return
  fi
  grep -E "CUDA backend" "$OUT/cmake.log"

  step "gpu tests (ctest -L gpu -V)"
  (cd "$B" && MOESCOPE_TMP="$TMPD" timeout 180 ctest -L gpu -V --output-on-failure) >"$OUT/ctest-gpu.log" 2>&1 || fail "ctest -L gpu"
  grep -E "^[0-9]+: (device|gpu:|linear|attention|router|moe path|grouped-tc|rmsnorm|rope|swiglu|auto|float32|CPU policy|greedy|mixtral|qwen|olmoe|switch|hier|deepseek|gpt_oss|hf_|mla|FAILED|.*CHECK failed)" \
    "$OUT/ctest-gpu.log" | cut -c1-200 | head -120
  grep -E "tests passed|Skipped|Failed|\*\*\*" "$OUT/ctest-gpu.log" | tail -10

  step "kernel micro-benchmarks + tiny-mixtral engine (bench_cuda)"
  MOESCOPE_TMP="$TMPD" timeout 120 "$B/bench_cuda" models/tiny-mixtral 256 64 2>&1 | tee "$OUT/bench_cuda.log" || fail "bench_cuda"

  step "CLI: CPU vs GPU on tiny-mixtral (scores, logits, routing at record level full)"
  ids=$(python3 -c "print(','.join(str((i*2654435761>>7)%8192) for i in range(300)))")
  rm -f "$OUT/trace-cpu.db" "$OUT/trace-gpu.db"
  timeout 60 "$B/moescope" run --model models/tiny-mixtral --ids "$ids" --score --batch 128 --record full \
    --db "$OUT/trace-cpu.db" --dump-logits "$TMPD/cpu.npy" --device cpu 2>&1 | tail -3 || fail "run --device cpu"
  timeout 60 "$B/moescope" run --model models/tiny-mixtral --ids "$ids" --score --batch 128 --record full \
    --db "$OUT/trace-gpu.db" --dump-logits "$TMPD/gpu.npy" --device cuda 2>&1 | tail -3 || fail "run --device cuda"
  timeout 60 python3 tools/gpu-compare.py "$TMPD/cpu.npy" "$TMPD/gpu.npy" "$OUT/trace-cpu.db" "$OUT/trace-gpu.db" \
    || fail "CPU vs GPU comparison"
  step "CLI: routed experts on tensor cores (--expert-gemm cublas) vs CPU, same comparison"
  rm -f "$OUT/trace-gpu-tc.db"
  timeout 60 "$B/moescope" run --model models/tiny-mixtral --ids "$ids" --score --batch 128 --record full \
    --db "$OUT/trace-gpu-tc.db" --dump-logits "$TMPD/gpu-tc.npy" --device cuda --expert-gemm cublas 2>&1 | tail -3 \
    || fail "run --device cuda --expert-gemm cublas"
  timeout 60 python3 tools/gpu-compare.py "$TMPD/cpu.npy" "$TMPD/gpu-tc.npy" "$OUT/trace-cpu.db" "$OUT/trace-gpu-tc.db" \
    || fail "CPU vs GPU (expert-gemm cublas) comparison"

  step "CLI: MLA and gpt-oss fixtures, CPU vs GPU (F32 checkpoints, BF16 on the GPU: comparison informational)"
  fids=$(python3 -c "print(','.join(str((i*37)%96) for i in range(40)))")
  for fx in hf_deepseek_v2 hf_deepseek_v3 hf_gpt_oss; do
    for dev in cpu cuda; do
      rm -f "$TMPD/$fx-$dev.db"
      timeout 60 "$B/moescope" run --model tests/fixtures/$fx --ids "$fids" --score --record full --db "$TMPD/$fx-$dev.db" \
        --dump-logits "$TMPD/$fx-$dev.npy" --device $dev 2>&1 | tail -1 || fail "run $fx --device $dev"
    done
    timeout 30 python3 tools/gpu-compare.py "$TMPD/$fx-cpu.npy" "$TMPD/$fx-cuda.npy" "$TMPD/$fx-cpu.db" "$TMPD/$fx-cuda.db" 2>&1 \
      | tail -2 || echo "$fx: CPU vs GPU differ (see above; F32 weights are rounded to BF16 on the GPU)"
  done

  step "CLI: greedy generation, CPU vs GPU"
  for dev in cpu cuda; do
    timeout 60 "$B/moescope" run --model models/tiny-mixtral --prompt "The village sat" --generate 48 --record off \
      --device $dev >"$TMPD/gen-$dev.txt" 2>&1 || fail "generate --device $dev"
  done
  head -c 400 "$TMPD/gen-cuda.txt"; echo
  if cmp -s "$TMPD/gen-cpu.txt" "$TMPD/gen-cuda.txt"; then echo "greedy text identical"; else
    echo "greedy text differs (a near-tie in the logits can do this; see the logit comparison above):"
    diff "$TMPD/gen-cpu.txt" "$TMPD/gen-cuda.txt" | head -6
  fi

  step "synthetic ~1.3B model: prefill/decode tokens/s, roofline, probe overhead per record level"
  if timeout 150 "$B/moescope" synth -o "$TMPD/synth1b" --family mixtral --layers 8 --hidden 2048 --heads 16 \
       --kv-heads 4 --experts 8 --top-k 2 --intermediate 2816 --vocab 32000 --max-pos 2048 --dtype bf16 \
       >"$OUT/synth.log" 2>&1; then
    MOESCOPE_TMP="$TMPD" timeout 150 "$B/bench_cuda" "$TMPD/synth1b" 512 128 2>&1 | sed -n '/^model/,$p' | tee "$OUT/bench_synth1b.log" \
      || fail "bench_cuda synth1b"
  else
    tail -3 "$OUT/synth.log"; fail "synth 1.3B"
  fi

  step "trace DB summary (GPU run)"
  timeout 30 python3 - "$OUT/trace-gpu.db" <<'EOF' || fail "trace summary"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
tabs = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view') ORDER BY name")]
print("tables:", ", ".join(tabs))
print("runs:", db.execute("SELECT run_id, device, policy, record_level FROM runs").fetchall())
for t in ("routing", "router_probs", "expert_load", "ops", "CUPTI_ACTIVITY_KIND_KERNEL", "NVTX_EVENTS", "kernel_scope"):
    if t in tabs:
        print(f"{t}: {db.execute(f'SELECT COUNT(*) FROM {t}').fetchone()[0]} rows")
print("ops by op (GPU event times):")
for r in db.execute("SELECT op, COUNT(*), SUM(end_ns - start_ns) / 1e6 FROM ops GROUP BY op ORDER BY 3 DESC"):
    print(f"  {r[0]:<16} {r[1]:>6} calls {r[2]:>10.3f} ms")
if "CUPTI_ACTIVITY_KIND_KERNEL" in tabs and "kernel_scope" in tabs:
    n = db.execute("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN kernel_scope s USING (correlationId) WHERE s.layer >= 0").fetchone()[0]
    print(f"kernel rows joined to a layer: {n}")
EOF

  step "GPU trace: export --perfetto --time, report (gpu_timeline), kernel time joined to layers"
  if [ -s "$OUT/trace-gpu.db" ]; then
    timeout 60 "$B/moescope" export "$OUT/trace-gpu.db" --perfetto "$OUT/trace-gpu.perfetto.json" --time \
      >"$OUT/time-gpu.txt" 2>"$OUT/export-gpu.log" || fail "export --perfetto --time (GPU trace)"
    cat "$OUT/export-gpu.log"; head -24 "$OUT/time-gpu.txt"
    timeout 30 python3 -c "
import json, sys, collections
ev = json.load(open(sys.argv[1]))
ev = ev['traceEvents'] if isinstance(ev, dict) else ev
c = collections.Counter(e.get('cat', e.get('ph')) for e in ev)
print('perfetto events by cat:', dict(c))
sys.exit(0 if c.get('kernel', 0) > 0 else 1)" "$OUT/trace-gpu.perfetto.json" || fail "perfetto JSON: unreadable or no kernel events"
    timeout 120 "$B/moescope" report "$OUT/trace-gpu.db" -o "$OUT/report-gpu" 2>&1 | tail -2 || fail "report (GPU trace)"
    [ -s "$OUT/report-gpu/gpu_timeline.png" ] && [ -s "$OUT/report-gpu/index.html" ] || fail "report (GPU trace): no gpu_timeline.png / index.html"
    grep -q "GPU timeline: kernels per stream" "$OUT/report-gpu/report.md" 2>/dev/null \
      || fail "report (GPU trace): the timeline was not drawn from GPU kernels"
    ls "$OUT/report-gpu/tables/" 2>/dev/null | tr '\n' ' '; echo
    timeout 30 python3 - "$OUT/trace-gpu.db" <<'EOF' || fail "kernel_scope coverage: <= 95% of kernel time has a layer"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
j = ("EXISTS (SELECT 1 FROM kernel_scope s WHERE s.correlationId = k.correlationId AND s.globalPid IS k.globalPid"
     " AND s.layer IS NOT NULL{})")
q = "SELECT COUNT(*), COALESCE(SUM(k.end - k.start), 0) FROM CUPTI_ACTIVITY_KIND_KERNEL k"
n, tot = db.execute(q).fetchone()
nj, tj = db.execute(q + " WHERE " + j.format("")).fetchone()
nl, tl = db.execute(q + " WHERE " + j.format(" AND s.layer >= 0")).fetchone()
print(f"kernels: {n} rows, {tot / 1e6:.3f} ms; with a kernel_scope layer: {nj} rows, "
      f"{100.0 * tj / max(tot, 1):.2f}% of kernel time; inside a model layer (>= 0): {100.0 * tl / max(tot, 1):.2f}%")
for r in db.execute("SELECT s.op, COUNT(*), SUM(k.end - k.start) / 1e6 FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN kernel_scope s"
                    " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid GROUP BY 1 ORDER BY 3 DESC"):
    print(f"  {str(r[0]):<16} {r[1]:>6} kernels {r[2]:>10.3f} ms")
if n == 0 or tot == 0 or tj == 0:
    print("FAILED LOUDLY: no GPU kernel time joined to kernel_scope (CUPTI or external correlation broken)")
    sys.exit(1)
sys.exit(0 if tj / tot > 0.95 else 1)
EOF
  else
    fail "no GPU trace DB ($OUT/trace-gpu.db) for export/report/kernel_scope checks"
  fi

  step "CPU suite (sanity, time permitting)"
  (cd "$B" && MOESCOPE_TMP="$TMPD" timeout 90 ctest -j "$(nproc)" -LE 'gpu|slow') >"$OUT/ctest-cpu.log" 2>&1 \
    || echo "CPU suite: not all passed within 90 s (informational; see ctest-cpu.log)"
  grep -E "tests passed|Failed|\*\*\*" "$OUT/ctest-cpu.log" | tail -8
}

main 2>&1 | tee "$OUT/gpu-check.log"
{
  echo
  echo "=== summary [t=${SECONDS}s]"
  if [ ! -s "$FAILS" ]; then echo "gpu-check: all steps passed"; else sed 's/^/gpu-check: FAILED: /' "$FAILS"; fi
} | tee -a "$OUT/gpu-check.log"
[ ! -s "$FAILS" ]
