#!/usr/bin/env bash
# The side-by-side with llama.cpp: both tools on the same GGUF files, the
# same threads and repetitions, interleaved, into BENCHMARKS.md.
#
#   scripts/compare-llamacpp.sh
#
# 1. llama.cpp's llama-bench is built OUTSIDE this repository (in
#    $LLAMACPP_DIR, default ../llamacpp) from the llama-cpp-python source
#    package on PyPI (pip download --no-deps --no-binary llama-cpp-python;
#    cmake and ninja come from PyPI too). Nothing of llama.cpp is committed.
# 2. asdsl exports the bench geometries as random-weight GGUF files
#    (asdsl export) into $LLAMACPP_DIR/models; the real SmolLM2 file comes
#    from ../shared/models.
# 3. For each case and round, llama-bench and asdsl bench run one after the
#    other (the order alternates between rounds) with -p, -n, -t and -r
#    alike; the table takes, per case, test and thread count, the median over
#    the rounds of each tool's mean tokens/s.
#
# Environment (defaults in brackets):
#   CASES   ["smollm2 llama-1b:q4_0 llama-1b:q4_k_m phi4-mini:q4_0 phi4-mini:q4_k_m"]
#           geometry:quant pairs, or smollm2 for the real model
#   TESTS   ["-p 512 -n 128"]     THREADS [1,2]   REPS [5]   ROUNDS [2]
#   OUT     [BENCHMARKS.md]       LLAMACPP_DIR [../llamacpp]
#   ASDSL_SHARED [../shared]      NOTE (a paragraph for the file)
#   ASDSL_BIN (use this asdsl binary instead of building one)
# Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
CASES=${CASES:-"smollm2 llama-1b:q4_0 llama-1b:q4_k_m phi4-mini:q4_0 phi4-mini:q4_k_m"}
TESTS=${TESTS:-"-p 512 -n 128"}
THREADS=${THREADS:-1,2}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-BENCHMARKS.md}
LLAMACPP_DIR=$(realpath -m "${LLAMACPP_DIR:-../llamacpp}")
SHARED=$(realpath -m "${ASDSL_SHARED:-../shared}")
case "$LLAMACPP_DIR/" in "$repo"/*) echo "LLAMACPP_DIR must be outside the repository" >&2; exit 2 ;; esac

# --- llama.cpp ---------------------------------------------------------------
bench_bin="$LLAMACPP_DIR/build/bin/llama-bench"
if [ ! -x "$bench_bin" ]; then
  mkdir -p "$LLAMACPP_DIR"
  if [ ! -d "$LLAMACPP_DIR"/llama_cpp_python-*/vendor/llama.cpp ]; then
    python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python -d "$LLAMACPP_DIR/src" >&2
    tar xzf "$LLAMACPP_DIR"/src/llama_cpp_python-*.tar.gz -C "$LLAMACPP_DIR"
  fi
  command -v cmake >/dev/null && command -v ninja >/dev/null || python3 -m pip install cmake ninja >&2
  src=$(ls -d "$LLAMACPP_DIR"/llama_cpp_python-*/vendor/llama.cpp | head -n1)
  cmake -S "$src" -B "$LLAMACPP_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  cmake --build "$LLAMACPP_DIR/build" --target llama-bench llama-perplexity -j "$(nproc)" >&2
fi
llama_version=$(ls -d "$LLAMACPP_DIR"/llama_cpp_python-* 2>/dev/null | head -n1 | sed 's/.*llama_cpp_python-/llama-cpp-python /')

# --- asdsl and the model files -----------------------------------------------
if [ -n "${ASDSL_BIN:-}" ]; then
  asdsl=$(realpath "$ASDSL_BIN")
else
  cargo build --release -p asdsl >&2
  asdsl="$repo/target/release/asdsl"
fi
models="$LLAMACPP_DIR/models"
mkdir -p "$models"
file_of() {
  case "$1" in
    smollm2) echo "$SHARED/models/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    *:*) echo "$models/${1%%:*}-${1##*:}.gguf" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
  esac
}
for c in $CASES; do
  f=$(file_of "$c")
  if [ ! -f "$f" ]; then
    "$asdsl" export --geometry "${c%%:*}" --quant "${c##*:}" -o "$f" >&2
  fi
done

# --- the runs ------------------------------------------------------------------
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for c in $CASES; do
    f=$(file_of "$c")
    tag=$(echo "$c" | tr ':' '_')
    run_llama() {
      echo "[round $round] llama-bench $c" >&2
      # shellcheck disable=SC2086
      "$bench_bin" -m "$f" $TESTS -t "$THREADS" -r "$REPS" -o json > "$results/llama.$tag.$round.json"
    }
    run_asdsl() {
      echo "[round $round] asdsl bench $c" >&2
      # shellcheck disable=SC2086
      "$asdsl" bench -m "$f" $TESTS -t "$THREADS" -r "$REPS" --json > "$results/asdsl.$tag.$round.json"
    }
    if [ $((round % 2)) -eq 1 ]; then run_llama; run_asdsl; else run_asdsl; run_llama; fi
  done
done

# --- the table -----------------------------------------------------------------
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD || commit="$commit (with uncommitted changes)"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 - "$results" "$OUT" <<PY
import glob, json, statistics, sys, os
results, out = sys.argv[1], sys.argv[2]
cases = "$CASES".split()
targets = {("tg", 1): 1.3, ("tg", 2): 1.1, ("pp", 1): 1.0, ("pp", 2): 1.0}
rows = []
for c in cases:
    tag = c.replace(":", "_")
    llama, ours, roof = {}, {}, {}
    for f in glob.glob(f"{results}/llama.{tag}.*.json"):
        for r in json.load(open(f)):
            test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
            llama.setdefault((test, r["n_threads"]), []).append(r["avg_ts"])
    for f in glob.glob(f"{results}/asdsl.{tag}.*.json"):
        for r in json.load(open(f)):
            ours.setdefault((r["test"], r["threads"]), []).append(r["tok_per_s_mean"])
            if r.get("roofline_pct") is not None:
                roof.setdefault((r["test"], r["threads"]), []).append(r["roofline_pct"])
    for key in sorted(set(llama) | set(ours), key=lambda k: (k[0][:2] != "tg", k[0], k[1])):
        l = statistics.median(llama[key]) if key in llama else None
        a = statistics.median(ours[key]) if key in ours else None
        ratio = a / l if a and l else None
        kind = key[0][:2]
        target = (1.2 if c == "smollm2" else targets[(kind, min(key[1], 2))]) if kind == "tg" else 1.0
        met = "-" if ratio is None else ("yes" if ratio >= target else "**no**")
        pct = f"{statistics.median(roof[key]):.0f} %" if key in roof else "-"
        fmt = lambda v: "-" if v is None else f"{v:.2f}"
        rows.append(f"| {c} | {key[0]} | {key[1]} | {fmt(l)} | {fmt(a)} | {fmt(ratio)}x | {target}x | {met} | {pct} |")
with open(out, "w") as o:
    o.write("# asdsl against llama.cpp\n\n")
    o.write("Tokens per second of llama.cpp's \`llama-bench\` and \`asdsl bench\` on the same GGUF files, threads and "
            "repetitions, run interleaved; per row the median over the rounds of each tool's mean. Random-weight files "
            "come from \`asdsl export\` (llama architecture); smollm2 is the real SmolLM2-135M-Instruct Q4_1. "
            "The last column is asdsl's decode weight bandwidth as a share of the DRAM read bandwidth it measured at "
            "that thread count.\n\n")
    o.write(f"- date: $(date -u '+%Y-%m-%d %H:%M UTC')\n- CPU: $cpu, $(nproc) logical CPUs\n")
    o.write(f"- asdsl commit: $commit; llama.cpp: $llama_version (built with GGML_NATIVE=ON)\n")
    o.write(f"- command: \`CASES=\"$CASES\" TESTS=\"$TESTS\" THREADS=$THREADS REPS=$REPS ROUNDS=$ROUNDS scripts/compare-llamacpp.sh\`\n")
    note = os.environ.get("NOTE", "")
    if note:
        o.write(f"\n{note}\n")
    o.write("\n| model | test | threads | llama.cpp t/s | asdsl t/s | asdsl / llama.cpp | target | met | asdsl % DRAM |\n")
    o.write("|---|---|---|---|---|---|---|---|---|\n")
    o.write("\n".join(rows) + "\n")
print(open(out).read())
PY
