#!/usr/bin/env bash
# Fuzzes one target for a while on one core, minimizes what it found, and
# refreshes the committed part of the corpus (trim.py).  Usage: fuzz/run.sh TARGET SECONDS
# (needs `cargo install cargo-fuzz` and a nightly toolchain).
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=${2:-300}
flags=(-O -a -s none --codegen-units 16)
mkdir -p "corpus-work/$target" "corpus/$target" "seeds/$target" "artifacts/$target"
cargo +nightly fuzz build "${flags[@]}" "$target"
bin=target/x86_64-unknown-linux-gnu/release/$target
# the committed corpus and the seeds start the run; new inputs go to corpus-work
"$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="artifacts/$target/" "corpus-work/$target" "corpus/$target" "seeds/$target" \
  2>&1 | tee "corpus-work/$target.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY|artifact" || true
# minimize: the fewest inputs that keep all coverage, in corpus-work/TARGET.min
rm -rf "corpus-work/$target.min" && mkdir -p "corpus-work/$target.min"
"$bin" -merge=1 -rss_limit_mb=2048 -timeout=10 "corpus-work/$target.min" "corpus/$target" "corpus-work/$target" "seeds/$target" \
  >"corpus-work/$target.merge.log" 2>&1
echo "$target: $(ls "corpus-work/$target.min" | wc -l) inputs in the minimized corpus"
# commit a small, spread-out part of it (corpus/TARGET)
python3 trim.py
