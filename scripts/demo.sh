#!/usr/bin/env bash
# demo.sh — the README's demo: scores the sample texts of each domain in demo/texts with
# the shipped model (models/tiny-mixtral) at record level full, generates a short
# continuation, then writes demo/report/ (index.html, report.md, heatmaps) and prints
# the balance table. Usage: scripts/demo.sh [path/to/moescope]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/moescope}
db=demo/trace.db
rm -f "$db" "$db-wal" "$db-shm"
args=()
for f in demo/texts/*.txt; do
  args+=(--file "$f" --label "$(basename "$f" .txt)")
done
echo "== scoring demo/texts per domain with models/tiny-mixtral (record level full)"
"$bin" run --model models/tiny-mixtral "${args[@]}" --score --record full --db "$db"
echo "== generating from a prompt (greedy)"
"$bin" run --model models/tiny-mixtral --prompt "The village sat at the edge of" --generate 24 --db "$db"
echo "== balance statistics (run 1)"
"$bin" stats "$db" --run 1
"$bin" report "$db" --run 1 -o demo/report
echo "== open demo/report/index.html (figures: demo/report/*.png, *.svg)"
