#!/usr/bin/env bash
# Produces kernels/TUNING.md: the figures of the autotuner (issue 3).
#
#  - the tune time for phi4-mini (q4_0) at threads {1, 2} (goal: <= 60 s);
#  - for every phi4-mini key and thread count, the plan's choice re-measured
#    in an exhaustive sweep of every candidate in the same run (goal: within
#    3 % of the best), with the heuristic default's and the slowest
#    candidate's times;
#  - the plan's speedup over the heuristic default per key and for the whole
#    decode step's GEMV time.
#
# Usage: scripts/tune-figures.sh            (writes kernels/TUNING.md)
# Environment: GEOMETRY (phi4-mini), QUANT (q4_0), THREADS (1,2), BUDGET (60),
#              OUT (kernels/TUNING.md), CARGO_TARGET_DIR (target),
#              ASDSL_BIN (use this asdsl binary instead of building one),
#              NOTE (a paragraph to add to the file, e.g. about the machine).
# Run it on a quiet machine: other processes on the cores or the memory bus
# move every number.
set -euo pipefail
cd "$(dirname "$0")/.."

GEOMETRY=${GEOMETRY:-phi4-mini}
QUANT=${QUANT:-q4_0}
THREADS=${THREADS:-1,2}
BUDGET=${BUDGET:-60}
OUT=${OUT:-kernels/TUNING.md}
TARGET=${CARGO_TARGET_DIR:-target}

if [ -n "${ASDSL_BIN:-}" ]; then
  BIN=$ASDSL_BIN
else
  cargo build --release -p asdsl >&2
  BIN="$TARGET/release/asdsl"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmd=(tune --geometry "$GEOMETRY" --quant "$QUANT" --threads "$THREADS" --budget "$BUDGET"
     -o "$work/plan.json" --verify --report "$work/report.md")
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
"$BIN" "${cmd[@]}" | tee "$work/out.txt"
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (with uncommitted changes)"; fi
cpu=$("$BIN" info --json 2>/dev/null | sed -n 's/^ *"brand": "\(.*\)",$/\1/p' | head -n1)
cores=$(nproc 2>/dev/null || echo '?')

{
  echo "# Tuning figures"
  echo
  echo "Produced by \`scripts/tune-figures.sh\`; reproduce with"
  echo
  echo '```sh'
  echo "GEOMETRY=$GEOMETRY QUANT=$QUANT THREADS=$THREADS BUDGET=$BUDGET scripts/tune-figures.sh"
  echo "# which runs: asdsl ${cmd[*]//$work/\$TMP}"
  echo '```'
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- CPU: ${cpu:-unknown}, $cores logical CPUs available"
  echo "- commit: $commit"
  echo "- load average (1/5/15 min) before: $load_before, after: $load_after"
  echo
  if [ -n "${NOTE:-}" ]; then echo "$NOTE"; echo; fi
  echo "## Tuning (\`asdsl tune\` output)"
  echo
  # the finals' statistic, as the report's last line names it (tune::FINAL_KEPT)
  kept=$(grep -o 'mean of the fastest [0-9]* %' "$work/report.md" | head -1 || true)
  echo "Time per call is the ${kept:-statistic named in the last line} of a finalist's samples (the median of"
  echo "the samples of a candidate that did not reach the finals), with the weights rotating"
  echo "through copies of at least 1 GiB, as the roofline's (DRAM-resident). \`x heur\` and \`x slow\` are the"
  echo "speedups of the choice over the heuristic default and over the slowest candidate."
  echo
  echo '```text'
  grep -v '^Verification against' "$work/out.txt" | sed '/^| matrix | shape | threads | plan/,$d'
  echo '```'
  echo
  echo "## The plan against an exhaustive sweep (same run)"
  echo
  echo "Every candidate (variant x partition) measured with the same number of samples, no"
  echo "pruning. \`choice vs best in the sweep\` compares the plan's choice with the sweep's"
  echo "fastest as the sweep measured them; \`choice vs best side by side\` re-measures the"
  echo "choice, the sweep's best of every packed layout and the heuristic default together,"
  echo "the same number of samples each in interleaved rounds (\`tune::head_to_head\`; the count"
  echo "and the statistic are in the last line), and compares the choice with the fastest there: the figure for the"
  echo "goal (within 3 %). The fastest of many noisy medians is biased low, being their minimum,"
  echo "and the sweep measures the layouts seconds apart; samples taken in the same rounds are neither."
  echo
  cat "$work/report.md"
} > "$OUT"
echo "wrote $OUT" >&2
