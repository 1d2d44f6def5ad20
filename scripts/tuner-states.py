#!/usr/bin/env python3
"""Which statistic of the tuner's finals picks the kernel that is fastest
when the DRAM bandwidth is high.

A shared host's bandwidth can flip between two states (on the Zen 4 of
kernels/TUNING.md, 2 threads read about 35 GB/s or 50-68 GB/s, for a tenth
of a second to seconds at a time). The tuner's finals sample their
candidates in interleaved rounds and rank them by one statistic of those
samples. This script reads the rounds that `examples/tuner_states.rs`
writes (a DRAM probe between rounds), takes each candidate's median time
in the rounds whose probes are above --split (the high state) and below
it, and then, for every window of --window consecutive rounds, the
candidate each statistic would choose: how often is that choice within 3 %
of the best in the high state?

    cargo run --release -p asdsl-kernels --example tuner_states -- 16384x3072 2 400 VARIANT... > rounds.csv
    scripts/tuner-states.py rounds.csv --split 48 [--window 9]
"""
import argparse
import csv
import statistics
from collections import defaultdict


def quantile(xs, q):
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def fastest_mean(kept):
    """The mean of the fastest `kept` fraction, as the tuner's `fastest_mean`."""
    def f(xs):
        xs = sorted(xs)
        n = min(max(round(kept * len(xs)), 1), len(xs))
        return statistics.mean(xs[:n])
    return f


STATISTICS = {
    "median": lambda xs: quantile(xs, 0.5),
    "mean": statistics.mean,
    "mean of fastest 80 %": fastest_mean(0.8),
    "mean of fastest 60 %": fastest_mean(0.6),
    "25th percentile": lambda xs: quantile(xs, 0.25),
    "minimum": min,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rounds", help="CSV written by examples/tuner_states.rs")
    ap.add_argument("--split", type=float, required=True, help="GB/s between the low and the high state")
    ap.add_argument("--window", type=int, default=9, help="rounds per simulated finals (the tuner's FINAL_SAMPLES)")
    args = ap.parse_args()

    times = defaultdict(dict)  # round -> variant -> us per call
    probe = {}
    with open(args.rounds) as f:
        for row in csv.DictReader(f):
            r = int(row["round"])
            times[r][row["variant"]] = float(row["us_per_call"])
            probe[r] = (float(row["probe_before_gbs"]) + float(row["probe_after_gbs"])) / 2
    rounds = sorted(times)
    names = sorted({v for t in times.values() for v in t})
    high = [r for r in rounds if probe[r] > args.split]
    low = [r for r in rounds if probe[r] <= args.split]
    print(f"{args.rounds}: {len(rounds)} rounds, {len(high)} above {args.split} GB/s, {len(low)} below")
    if not high:
        print("no round in the high state: nothing to rank by")
        return
    in_high = {v: statistics.median(times[r][v] for r in high) for v in names}
    print(f"{'variant':40s} {'high us':>9s} {'low us':>9s}")
    for v in sorted(names, key=in_high.get):
        lo = statistics.median(times[r][v] for r in low) if low else float("nan")
        print(f"{v:40s} {in_high[v]:9.1f} {lo:9.1f}")
    best = min(in_high.values())
    windows = [rounds[s:s + args.window] for s in range(len(rounds) - args.window + 1)]
    print(f"choice of each statistic over {len(windows)} windows of {args.window} rounds, against the best in the high state:")
    for name, stat in STATISTICS.items():
        gaps = []
        for w in windows:
            choice = min(names, key=lambda v: stat([times[r][v] for r in w]))
            gaps.append(in_high[choice] / best - 1)
        within = sum(g <= 0.03 for g in gaps)
        gaps.sort()
        print(f"  {name:22s} within 3 %: {within:4d} of {len(gaps)} ({100 * within / len(gaps):.0f} %), "
              f"median gap {100 * statistics.median(gaps):.1f} %, 90th percentile {100 * gaps[int(0.9 * len(gaps))]:.1f} %")


if __name__ == "__main__":
    main()
