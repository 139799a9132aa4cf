"""Simulated cache misses per delivery from a `CALLGRIND_ARGS="--cache-sim=yes"` run of
tuning/instructions.sh: for each load, the old build, the new one and uWebSockets (if
it ran). Every thread of each process, over the deliveries the relay counted (for
uWebSockets, the deliveries the open-loop bench planned, as instructions_table.py
counts its instructions).

    python3 tuning/cache_table.py OUT_DIR LOAD...

Columns: instructions (Ir), L1 instruction-cache misses (I1mr), L1 data-cache misses
(D1mr + D1mw) and last-level misses (ILmr + DLmr + DLmw), each per delivery. The
simulated caches take this CPU's sizes; they see user space only: what the kernel
evicts between system calls is not in them, so real misses are more, not fewer.
"""

import sys

from instructions_table import planned_deliveries, relay_deliveries


def totals(path):
    """The run's event names and their totals over the whole process."""
    events, values = None, None
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("totals:") or (values is None and line.startswith("summary:")):
                values = [int(x) for x in line.split()[1:]]
    if not events or not values or "I1mr" not in events:
        raise SystemExit(f"{path}: no cache events (run with CALLGRIND_ARGS=--cache-sim=yes)")
    return dict(zip(events, values))


def deliveries(out, name, load):
    if name.endswith("-uws"):
        return planned_deliveries(out, name, load)
    return relay_deliveries(out, name)


def main():
    out, loads = sys.argv[1], sys.argv[2:]
    print("| load | build | instr | L1i misses | L1d misses | last-level misses |")
    print("|---|---|---|---|---|---|")
    for load in loads:
        for v in ("old", "new", "uws"):
            name = f"{load}-{v}"
            try:
                t = totals(f"{out}/{name}.cg")
            except FileNotFoundError:
                continue
            n = max(deliveries(out, name, load), 1)
            ll = t["ILmr"] + t["DLmr"] + t["DLmw"]
            print(
                f"| {load} | {v} | {t['Ir'] / n:,.0f} | {t['I1mr'] / n:.2f} "
                f"| {(t['D1mr'] + t['D1mw']) / n:.2f} | {ll / n:.3f} |"
            )


if __name__ == "__main__":
    main()
