"""Medians over the rounds `tuning/fanout.sh` wrote (one JSON per round, each with
every variant of that round), one table per setup, and feedrelay's ratios to each
other relay (the baseline, and uWebSockets when it ran)."""
import collections
import json
import pathlib
import re
import statistics
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/fanout")
runs = collections.defaultdict(list)  # (setup, load) -> [{variant: row}]
for f in sorted(out.glob("*.json")):
    m = re.match(r"(.+)-(\d+x\d+)-r(\d+)\.json$", f.name)
    if not m:
        continue
    try:
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    except ValueError:
        rows = json.loads(f.read_text())
    if isinstance(rows, dict):
        rows = rows.get("results", [rows])
    flat = []
    for r in rows:
        flat.extend(r if isinstance(r, list) else [r])
    for r in flat:
        # Expected deliveries that had not arrived when the drain window closed: a
        # relay that falls behind leaves them queued without a sequence gap.
        r["undelivered"] = max(0, r.get("expected", 0) - r.get("received", 0))
    runs[(m.group(1), m.group(2))].append({r["variant"]: r for r in flat})

COLS = [
    ("p50 µs", "p50_us", "{:.0f}"),
    ("p99 µs", "p99_us", "{:.0f}"),
    ("p99.99 µs", "p9999_us", "{:.0f}"),
    ("user ns", "user_ns_per_delivery", "{:.0f}"),
    ("sys ns", "sys_ns_per_delivery", "{:.0f}"),
    ("CPU ns", "cpu_ns_per_delivery", "{:.0f}"),
    ("segs", "relay_segments_per_delivery", "{:.3f}"),
    ("IPIs", "ipis_per_delivery", "{:.4f}"),
    ("gen busy %", "generator_busy_percent", "{:.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("undelivered", "undelivered", "{:.0f}"),
]


# Counts, not costs: no ratio is printed for them.
COUNTS = ("lost", "undelivered")
RATIO_COLS = [c for c in COLS if c[1] not in COUNTS]


def ratio(x):
    """Two decimals; a ratio below 0.01 (a peer that fell behind) keeps its size."""
    return f"{x:.2f}" if x >= 0.01 else f"{x:.0e}"


def med(rounds, variant, key):
    vals = [r[variant][key] for r in rounds if variant in r and r[variant].get(key) is not None]
    return statistics.median(vals) if vals else None


for (setup, load), rounds in sorted(runs.items()):
    variants = sorted({v for r in rounds for v in r}, key=lambda v: (v != "park", v))
    print(f"\n### {setup}, {load.replace('x', ' msg/s x ')} subscribers ({len(rounds)} rounds, medians)\n")
    print("| variant | " + " | ".join(c[0] for c in COLS) + " |")
    print("|---" * (len(COLS) + 1) + "|")
    for v in variants:
        cells = []
        for _, key, fmt in COLS:
            x = med(rounds, v, key)
            cells.append("-" if x is None else fmt.format(x))
        print(f"| {v} | " + " | ".join(cells) + " |")
    peers = [v for v in ("baseline", "uws") if v in variants]
    ours = next((v for v in variants if v not in peers and v != "floor"), None)
    for peer in peers if ours else []:
        ratios = []
        for name, key, _ in RATIO_COLS:
            a, b = med(rounds, ours, key), med(rounds, peer, key)
            ratios.append("-" if not a or not b else ratio(a / b))
        print(f"| {ours} / {peer} | " + " | ".join(ratios) + " |" + " |" * len(COUNTS))
