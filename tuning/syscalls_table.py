#!/usr/bin/env python3
"""The table of tuning/syscalls.sh: per relay and load, medians over the rounds of
system calls per message and per delivery, and of the calls that carry the work.

    python3 tuning/syscalls_table.py OUT_DIR WINDOW_S LOAD...
"""

import csv
import glob
import json
import re
import statistics
import sys

out, window, loads = sys.argv[1], float(sys.argv[2]), sys.argv[3:]

# (column, events summed, per message or per delivery)
COLS = [
    ("syscalls / message", ["raw_syscalls:sys_enter"], "message"),
    ("syscalls / delivery", ["raw_syscalls:sys_enter"], "delivery"),
    ("io_uring_enter / message", ["syscalls:sys_enter_io_uring_enter"], "message"),
    ("io_uring ops / delivery", ["io_uring:io_uring_submit_req"], "delivery"),
    (
        "send calls / delivery",
        [f"syscalls:sys_enter_{c}" for c in ("writev", "sendto", "sendmsg", "write")],
        "delivery",
    ),
    (
        "receive calls / message",
        [f"syscalls:sys_enter_{c}" for c in ("read", "recvfrom")],
        "message",
    ),
    ("epoll_wait / message", ["syscalls:sys_enter_epoll_wait"], "message"),
    ("futex / message", ["syscalls:sys_enter_futex"], "message"),
]


def counts(path):
    """Event -> count from one `perf stat -x,` file (0 where not counted)."""
    got = {}
    with open(path) as f:
        for row in csv.reader(line for line in f if line.strip() and not line.startswith("#")):
            if len(row) >= 3:
                value = row[0].strip()
                got[row[2].strip()] = int(value) if value.isdigit() else 0
    return got


def lost(path):
    """Deliveries the bench counted lost, or None without its `--json` file."""
    try:
        with open(path) as f:
            return sum(int(v["lost"]) for v in json.load(f))
    except (OSError, ValueError, KeyError):
        return None


print("| load | relay | rounds | " + " | ".join(c for c, _, _ in COLS) + " | lost |")
print("|---" * (len(COLS) + 4) + "|")
for load in loads:
    rate, subs = (int(x) for x in load.split("x"))
    messages = rate * window
    for relay in ("feedrelay", "baseline"):
        files = sorted(glob.glob(f"{out}/{relay}-{load}-r*.csv"))
        if not files:
            continue
        rounds = [counts(p) for p in files]
        cells = []
        for _, events, per in COLS:
            n = messages if per == "message" else messages * subs
            cells.append(statistics.median(sum(c.get(e, 0) for e in events) / n for c in rounds))
        losses = [lost(re.sub(r"\.csv$", ".json", p)) for p in files]
        lost_cell = "?" if None in losses else str(sum(losses))
        print(
            f"| {load} | {relay} | {len(files)} | "
            + " | ".join(f"{x:.3f}" for x in cells)
            + f" | {lost_cell} |"
        )
