#!/usr/bin/env python3
"""A desk's feedrelay client, to read in five minutes (Python 3, `websockets`).

It subscribes with `seq=1` (each message arrives as
`{"topic":..,"epoch":..,"seq":N,"msg":<the message>}`) and `snapshot=1` (the last message
of each topic first), and keeps `(epoch, seq)` per topic. On every reconnect it resumes
(`{"op":"subscribe","topics":[..],"resume":{"T":[epoch,seq],..}}`): the relay sends
what came after each position from its history, then the live stream, so nothing is
missed; when it cannot (its history does not reach back, or another epoch: a
restarted relay) it says so with `{"event":"reset",..}` and the last message:

- `reset`, or a message of another epoch: the count starts again; what came between
  is not known (count it as a gap in the desk's books);
- same epoch, seq jumped by k > 1 (should not happen while resuming works): k - 1
  messages were missed;
- `{"event":"shutdown"}`: the relay is stopping; reconnect after `reconnect_in_ms`
  (a rolling restart has another relay on the same address already);
- `stale` / `live` / `gap`: the feed behind a topic went quiet, came back, or skipped
  numbers no line filled.

Nothing is ever missed silently: every message arrives once, in order, or the client
knows the range it did not get.

    python3 examples/desk_client.py ws://127.0.0.1:9001 BTC-USD,ETH-USD

`--seconds N` stops after N seconds and prints one JSON summary line per topic;
`--cut-after S` drops the connection once, abruptly, after S seconds (a network cut, for
tests).
"""

import argparse
import asyncio
import json
import random
import sys
import time

import websockets


class Topic:
    """What the client knows of one topic's stream."""

    def __init__(self):
        self.epoch = None
        self.first = 0  # the first seq seen in this epoch
        self.seq = 0
        self.received = 0  # in this epoch
        self.missed = 0  # in this epoch, counted from seq jumps
        self.resets = 0  # epoch changes: a count started over
        self.out_of_order = 0  # must stay 0: the relay keeps each topic's order

    def see(self, epoch, seq, from_snapshot=False):
        if epoch != self.epoch:
            if self.epoch is not None:
                self.resets += 1
            self.epoch, self.first, self.seq = epoch, seq, seq
            self.received = self.missed = 0
        elif seq <= self.seq:
            # A snapshot may repeat the last message seen: not a new one.
            if not (from_snapshot and seq == self.seq):
                self.out_of_order += 1
            return False
        else:
            self.missed += seq - self.seq - 1
            self.seq = seq
        return True


async def run(url, topics, seconds, cut_after, out):
    state = {t: Topic() for t in topics}
    events = {"shutdown": 0, "stale": 0, "live": 0, "gap": 0, "reset": 0, "connects": 0}
    deadline = time.monotonic() + seconds
    cut_at = time.monotonic() + cut_after if cut_after else None
    backoff = 0.05
    base = url.rstrip("/")
    while time.monotonic() < deadline:
        wait = backoff
        positions = {n: [t.epoch, t.seq] for n, t in state.items() if t.epoch is not None}
        query = f"{base}/ws?seq=1" if positions else \
            f"{base}/ws?topics={','.join(topics)}&seq=1&snapshot=1"
        try:
            async with websockets.connect(query, max_size=None, open_timeout=5) as ws:
                events["connects"] += 1
                backoff = 0.05
                if positions:
                    await ws.send(json.dumps({"op": "subscribe", "topics": topics,
                                              "resume": positions}))
                snapshot = True  # until the first live message per topic
                seen_live = set()
                while time.monotonic() < deadline:
                    if cut_at and time.monotonic() >= cut_at:
                        cut_at = None
                        ws.transport.abort()  # a network cut: no close handshake
                        break
                    timeout = max(0.01, deadline - time.monotonic())
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout)
                    except asyncio.TimeoutError:
                        break
                    if isinstance(raw, bytes):
                        continue  # binary messages carry no number
                    m = json.loads(raw)
                    if "event" in m:
                        kind = m["event"]
                        if kind in events:
                            events[kind] += 1
                        if kind == "shutdown":
                            wait = m.get("reconnect_in_ms", 0) / 1000
                            break
                        if kind == "reset" and m.get("topic") in state:
                            # The next message starts the topic's count again.
                            t = state[m["topic"]]
                            t.resets += 1
                            t.epoch, t.first, t.seq = m["epoch"], m["seq"], m["seq"] - 1
                            t.received = t.missed = 0
                        continue
                    t = state.get(m.get("topic"))
                    if t is None or "seq" not in m:
                        continue  # not ours, or not numbered (see the relay's docs)
                    first_after_connect = m["topic"] not in seen_live
                    seen_live.add(m["topic"])
                    if t.see(m["epoch"], m["seq"], from_snapshot=first_after_connect):
                        t.received += 1
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
            backoff = min(backoff * 2, 2.0)
        # Jitter, so a relay's clients do not all come back in one instant.
        await asyncio.sleep(wait * (0.5 + random.random()))
    for name, t in sorted(state.items()):
        print(json.dumps({"topic": name, "epoch": t.epoch, "first_seq": t.first,
                          "last_seq": t.seq,
                          "received": t.received, "missed": t.missed,
                          "resets": t.resets, "out_of_order": t.out_of_order}), file=out)
    print(json.dumps({"events": events}), file=out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("topics")
    p.add_argument("--seconds", type=float, default=float("inf"))
    p.add_argument("--cut-after", type=float, default=None)
    a = p.parse_args()
    asyncio.run(run(a.url, a.topics.split(","), a.seconds, a.cut_after, sys.stdout))


if __name__ == "__main__":
    main()
