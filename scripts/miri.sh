#!/usr/bin/env bash
# Runs the unsafe code and the parsers under Miri (undefined behaviour,
# out-of-bounds and uninitialized reads, data races), on small inputs:
#
# - the scalar kernel variants through the registry against their formats'
#   reference GEMVs (packing, aligned buffers, output writes, the thread team);
#   under Miri the CPU reports no SIMD features, so only scalar variants run;
# - the GGUF, whole-model (tiny random GGUF), config.json and plan parsers on
#   every fuzz seed and crash regression.
#
# Needs a nightly toolchain with Miri: `rustup component add --toolchain
# nightly miri rust-src` then `cargo +nightly miri setup`. Isolation is off so
# the tests can read their fixture files (and sysfs for the CPU's caches).
# Takes about 25 minutes on one core; not part of .ci/run (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/miri}"
cargo +nightly miri test -p asdsl-kernels --test variants
# The model loader packs with rayon, whose crossbeam-epoch breaks Miri's
# (experimental) Stacked Borrows rules inside crossbeam itself, a known
# upstream issue; these tests run under Tree Borrows instead. rayon's global
# pool threads never exit, which Miri's leak check would report at the end.
MIRIFLAGS="$MIRIFLAGS -Zmiri-tree-borrows -Zmiri-ignore-leaks" cargo +nightly miri test -p asdsl-tests --test fuzz_seeds
