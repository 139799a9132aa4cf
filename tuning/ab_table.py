#!/usr/bin/env python3
"""Medians per load and variant of tuning/ab.sh's rounds (the `bench --json` files in
the directory given), then the ratios new/old, new/base and old/base."""
import collections
import glob
import json
import statistics
import sys

COLS = [
    ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"),
    ("p9999_us", "p99.99 µs"),
    ("user_ns_per_delivery", "user ns"),
    ("sys_ns_per_delivery", "sys ns"),
    ("cpu_ns_per_delivery", "CPU ns"),
    ("relay_segments_per_delivery", "relay segs"),
    ("lost", "lost"),
]

runs = collections.defaultdict(lambda: collections.defaultdict(list))
for path in sorted(glob.glob(sys.argv[1] + "/*.json")):
    load = path.split("/")[-1].split("-r")[0]
    for v in json.load(open(path)):
        for key, _ in COLS:
            runs[(load, v["variant"])][key].append(v[key])


def med(load, variant, key):
    return statistics.median(runs[(load, variant)][key])


def fmt(key, x):
    return f"{x:.3f}" if "segments" in key else f"{x:.0f}"


print("| load | variant | rounds | " + " | ".join(h for _, h in COLS) + " |")
print("|---" * (len(COLS) + 3) + "|")
for (load, variant), m in sorted(runs.items()):
    cells = [fmt(k, med(load, variant, k)) for k, _ in COLS]
    print(f"| {load} | {variant} | {len(m['p50_us'])} | " + " | ".join(cells) + " |")
for load in sorted({l for l, _ in runs}):
    for a, b in [("new", "old"), ("new", "base"), ("old", "base")]:
        if (load, a) in runs and (load, b) in runs:
            cells = [
                f"{med(load, a, k) / max(1e-9, med(load, b, k)):.2f}" for k, _ in COLS[:-1]
            ]
            print(f"| {load} | {a} / {b} | | " + " | ".join(cells) + " | |")
