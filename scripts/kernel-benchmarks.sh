#!/usr/bin/env bash
# Regenerates kernels/BENCHMARKS.md: the GEMV criterion benches (weights
# streamed from DRAM) and, around every benchmark, the roofline's DRAM read
# bandwidth; the table gives each format's fastest variant per shape and
# thread count as a percentage of the bandwidth of the same minutes. The new
# run goes on top; the previous runs (and their notes) are kept below it, the
# last one retitled "Earlier run".
#
#   scripts/kernel-benchmarks.sh                      # every format (about an hour)
#   ASDSL_BENCH_FORMATS=q4_0,q4_k,q8_0,q4g32 scripts/kernel-benchmarks.sh
#
# Every ASDSL_BENCH_* variable of kernels/benches/gemv.rs applies.
set -euo pipefail
cd "$(dirname "$0")/.."
out=kernels/BENCHMARKS.md
table=$(mktemp)
previous=$(mktemp)
trap 'rm -f "$table" "$previous"' EXIT

ASDSL_BENCH_REPORT="$table" cargo bench -p asdsl-kernels --bench gemv -- --noplot "$@" >&2

# (before the table is written: writing it is itself a change to the tree)
commit="$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
[ -f "$out" ] && cp "$out" "$previous"
{
  echo "# Kernel benchmarks"
  echo
  echo "Weight bandwidth of the fastest registry variant per format, shape and thread"
  echo "count, with weights streamed from DRAM (rotating over copies as large as the"
  echo "roofline's DRAM buffer, at least 1 GiB), against the DRAM read bandwidth of the same"
  echo "minutes: \`asdsl_kernels::roofline\`'s full measurement at the start, its two"
  echo "best read patterns repeated (\`DramProbe\`, three reads of 1 GiB each) right"
  echo "before and right after every benchmark, the higher of the two. Times are"
  echo "criterion's median per call; GB/s = 10^9 bytes/s of packed weights. The last"
  echo "column sets batches of calls against probe reads in lock step (the note under"
  echo "the table says how), which this host's fast-changing 2-thread bandwidth needs."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- CPU: $cpu, $(nproc) logical CPUs"
  echo "- commit: $commit"
  echo "- command: \`ASDSL_BENCH_FORMATS=${ASDSL_BENCH_FORMATS:-all} ASDSL_BENCH_SHAPES=${ASDSL_BENCH_SHAPES:-default} ASDSL_BENCH_THREADS=${ASDSL_BENCH_THREADS:-1,2} scripts/kernel-benchmarks.sh\`"
  echo
  cat "$table"
  if [ -s "$previous" ]; then
    # The previous top run: its "- date:" line up to the first "## " heading,
    # retitled with its date and CPU; then everything from that heading on.
    when=$(grep -m1 '^- date: ' "$previous" | sed 's/^- date: //')
    where=$(grep -m1 '^- CPU: ' "$previous" | sed 's/^- CPU: //')
    echo
    echo "## Earlier run: $where ($when)"
    echo
    awk '/^## /{exit} seen{print} /^- date: /{seen=1; print}' "$previous"
    awk '/^## /{on=1} on{print}' "$previous"
  fi
} > "$out"
echo "wrote $out" >&2
