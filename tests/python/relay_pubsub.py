"""Python `websockets` as publisher and subscribers of `feedrelay run`.

Usage: python relay_pubsub.py ws://127.0.0.1:PORT/
Prints a closing 'N passed, M failed' line; exits non-zero on failure.
"""
import asyncio
import json
import sys

import websockets

import cases

BASE = sys.argv[1]
TIMEOUT = 10


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def case_publish_and_subscribe():
    async with websockets.connect(BASE + "ws?topics=A") as a, \
            websockets.connect(BASE + "ws?topics=*") as star, \
            websockets.connect(BASE + "pub") as pub:
        assert await recv_json(a) == {"event": "subscribed", "topics": ["A"]}
        assert await recv_json(star) == {"event": "subscribed", "topics": ["*"]}
        for seq in range(200):
            await pub.send(json.dumps({"s": "A" if seq % 2 == 0 else "B", "seq": seq}))
        got_a = [await recv_json(a) for _ in range(100)]
        assert [m["seq"] for m in got_a] == list(range(0, 200, 2)), got_a[:5]
        got_star = [await recv_json(star) for _ in range(200)]
        assert [m["seq"] for m in got_star] == list(range(200))


async def case_subscribe_at_run_time():
    async with websockets.connect(BASE + "ws") as sub, websockets.connect(BASE + "pub") as pub:
        await sub.send(json.dumps({"op": "subscribe", "topics": ["Q"]}))
        assert await recv_json(sub) == {"event": "subscribed", "topics": ["Q"]}
        await pub.send(json.dumps({"s": "Q", "v": 1}))
        assert await recv_json(sub) == {"s": "Q", "v": 1}
        await sub.send("not json")
        reply = await recv_json(sub)
        assert reply["event"] == "error", reply


async def case_binary_is_relayed_as_binary():
    async with websockets.connect(BASE + "ws?topics=BIN") as sub, websockets.connect(BASE + "pub") as pub:
        await recv_json(sub)
        await pub.send(b'{"s":"BIN","x":1}')
        got = await asyncio.wait_for(sub.recv(), TIMEOUT)
        assert got == b'{"s":"BIN","x":1}', got


cases.run(globals())
