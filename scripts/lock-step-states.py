#!/usr/bin/env python3
"""The kernel benches' lock-step rounds, split by the machine's state.

A shared host's DRAM bandwidth can sit in two states (on the Zen 4 of
kernels/BENCHMARKS.md, 2 threads read about 35 GB/s while a neighbour
streams and about 60 GB/s while it does not). In the low state every
variant that keeps up with 35 GB/s reads 100 %, so the state a run spends
most of its time in decides which variant looks best. This script reads the
rounds that `ASDSL_BENCH_ROUNDS_CSV=FILE` writes and gives, per format, shape and
thread count, each variant's median percentage of the probes in the steady
rounds below and above a split bandwidth (the mean of a round's two probes).

    ASDSL_BENCH_ROUNDS_CSV=rounds.csv ASDSL_BENCH_FORMATS=q4_k scripts/kernel-benchmarks.sh
    scripts/lock-step-states.py rounds.csv --split 48 [--threads 2] [--min-rounds 5]
"""
import argparse
import csv
import statistics
from collections import defaultdict

SPREAD = 1.15  # as PROBE_SPREAD in kernels/benches/gemv.rs: a steady round's probes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rounds", help="CSV written by ASDSL_BENCH_ROUNDS_CSV")
    ap.add_argument("--split", type=float, required=True, help="GB/s between the low and the high state")
    ap.add_argument("--threads", type=int, help="only this thread count")
    ap.add_argument("--min-rounds", type=int, default=5, help="fewer steady rounds in a state: not shown")
    args = ap.parse_args()

    # (format, shape, threads) -> variant -> state -> [percent]
    table = defaultdict(lambda: defaultdict(lambda: {"low": [], "high": []}))
    with open(args.rounds, newline="") as f:
        for row in csv.DictReader(f):
            threads = int(row["threads"])
            if args.threads is not None and threads != args.threads:
                continue
            gbs = float(row["batch_gbs"])
            before, after = float(row["probe_before_gbs"]), float(row["probe_after_gbs"])
            if max(before, after) > SPREAD * min(before, after):
                continue
            ceiling = (before + after) / 2
            state = "high" if ceiling > args.split else "low"
            table[(row["format"], row["shape"], threads)][row["variant"]][state].append(100 * gbs / ceiling)

    print(f"| format | shape | threads | variant | below {args.split:g} GB/s | above {args.split:g} GB/s |")
    print("|---|---|---|---|---|---|")
    for (fmt, shape, threads), variants in sorted(table.items()):
        for variant, states in sorted(variants.items()):
            cells = []
            for state in ("low", "high"):
                pcts = states[state]
                if len(pcts) >= args.min_rounds:
                    cells.append(f"{statistics.median(pcts):.0f} % ({len(pcts)})")
                else:
                    cells.append("-")
            if cells != ["-", "-"]:
                print(f"| {fmt} | {shape} | {threads} | `{variant}` | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
