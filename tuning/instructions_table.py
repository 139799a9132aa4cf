"""The table of tuning/instructions.sh: instructions per delivery and per fan-out write
from callgrind's output, for each load, the old build beside the new.

    python3 tuning/instructions_table.py OUT_DIR LOAD...
"""

import json
import os
import re
import subprocess
import sys

# instructions.sh's bench: seconds of warm-up, then of measurement.
WARMUP_S, DURATION_S = 2, 10


def annotate(path, *args):
    return subprocess.run(
        ["callgrind_annotate", *args, path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def count(text):
    return int(text.replace(",", ""))


def inclusive(lines, pattern):
    """The largest inclusive count of a function whose line matches `pattern`."""
    best = 0
    for line in lines:
        if re.search(pattern, line):
            m = re.match(r"\s*([\d,]+)", line)
            if m:
                best = max(best, count(m.group(1)))
    return best


def planned_deliveries(out, name, load):
    """The deliveries the open-loop bench planned (rate x subscribers x 12 s of warm-up
    and measurement): a peer's count only if the bench lost none, which is checked."""
    with open(f"{out}/{name}.json") as f:
        variants = json.load(f)
    if any(v["lost"] or v["received"] < v["expected"] for v in variants):
        raise SystemExit(f"{name}: uWebSockets lost deliveries; its count would be wrong")
    rate, subs = (int(x) for x in load.split("x"))
    return rate * subs * (WARMUP_S + DURATION_S)


def relay_deliveries(out, name):
    """The deliveries feedrelay counted, from its log's last line."""
    with open(f"{out}/{name}.log") as f:
        m = re.search(r"messages in \d+ out (\d+)", f.read())
    if not m:
        raise SystemExit(f"{name}: no delivery count in the relay's log")
    return int(m.group(1))


def measure_uws(out, name, load):
    """uWebSockets' instructions per delivery: the whole process (one thread) over the
    deliveries the open-loop bench planned."""
    deliveries = planned_deliveries(out, name, load)
    total = inclusive(annotate(f"{out}/{name}.cg", "--inclusive=yes").splitlines(), r"PROGRAM TOTALS")
    return {"deliveries": deliveries, "per_delivery": total / deliveries}


def measure(out, name):
    path = f"{out}/{name}.cg"
    deliveries = relay_deliveries(out, name)
    incl = annotate(path, "--inclusive=yes").splitlines()
    total = inclusive(incl, r"PROGRAM TOTALS")
    collector = inclusive(incl, r"metrics::collector::collect::\{\{closure\}\} \[")
    fanout = inclusive(incl, r"fanout\.rs:<feedrelay::io::ring::task::Spawned")
    reap = inclusive(incl, r"io::ring::Inner::reap \[")
    tree = annotate(path, "--tree=calling", "--inclusive=yes")
    calls = re.findall(r">\s+\S*fanout::start \(([\d,]+)x\)", tree)
    writes = max((count(c) for c in calls), default=0)
    return {
        "deliveries": deliveries,
        "per_delivery": (total - collector) / max(deliveries, 1),
        "writes": writes,
        # No calls to count where `fanout::start` was inlined (a PGO build).
        "per_write": (fanout + reap) / writes if writes else None,
    }


def main():
    out, loads = sys.argv[1], sys.argv[2:]
    print("| load | build | deliveries | instr/delivery | fan-out writes | instr/write |")
    print("|---|---|---|---|---|---|")
    for load in loads:
        got = {v: measure(out, f"{load}-{v}") for v in ("old", "new")}
        for v in ("old", "new"):
            g = got[v]
            per_write = "" if g["per_write"] is None else f"{g['per_write']:,.0f}"
            print(
                f"| {load} | {v} | {g['deliveries']:,} | {g['per_delivery']:,.0f} "
                f"| {g['writes']:,} | {per_write} |"
            )
        o, n = got["old"], got["new"]
        ratio = ""
        if o["per_write"] and n["per_write"] is not None:
            ratio = f"{n['per_write'] / o['per_write']:.3f}"
        print(f"| {load} | new / old | | {n['per_delivery'] / o['per_delivery']:.3f} | | {ratio} |")
        if os.path.exists(f"{out}/{load}-uws.cg"):
            u = measure_uws(out, f"{load}-uws", load)
            print(f"| {load} | uws | {u['deliveries']:,} (planned) | {u['per_delivery']:,.0f} | | |")
            print(f"| {load} | new / uws | | {n['per_delivery'] / u['per_delivery']:.2f} | | |")


if __name__ == "__main__":
    main()
