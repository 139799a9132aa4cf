"""Python `websockets` (permessage-deflate on, as it is by default) publishing to and
subscribing from `feedrelay run` configured with `[compression] enabled = true` and
`topic_pointer = "/s"`.

Usage: python relay_deflate.py ws://127.0.0.1:PORT/
Prints a closing 'N passed, M failed' line; exits non-zero on failure.
"""
import asyncio
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import cases

BASE = sys.argv[1]


def msg(topic, i, pad=120):
    return json.dumps({"s": topic, "seq": i, "book": "101.25/3.5 " * (pad // 11)})


async def subscribed(ws):
    reply = json.loads(await ws.recv())
    assert reply["event"] == "subscribed", reply


def deflate_of(ws):
    ext = ws.protocol.extensions
    assert len(ext) == 1 and ext[0].name == "permessage-deflate", ext
    return ext[0]


async def case_compressed_both_ways_in_order():
    # The publisher compresses with context takeover (websockets' default); the relay
    # inflates once and compresses once for its deflate subscribers.
    async with websockets.connect(BASE + "ws?topics=A,B") as sub:
        ext = deflate_of(sub)
        assert ext.remote_no_context_takeover, "the relay compresses each message alone"
        await subscribed(sub)
        async with websockets.connect(BASE + "pub") as pub:
            deflate_of(pub)
            sent = [msg("AB"[i % 2], i) for i in range(500)]
            for m in sent:
                await pub.send(m)
            got = [await sub.recv() for _ in sent]
            assert got == sent, "order or content differs"


async def case_a_narrower_window_still_gets_every_message():
    narrow = ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=True)
    async with websockets.connect(BASE + "ws?topics=C", extensions=[narrow], compression=None) as sub:
        assert deflate_of(sub).remote_max_window_bits == 10
        await subscribed(sub)
        async with websockets.connect(BASE + "pub", compression=None) as pub:
            sent = [msg("C", i) for i in range(50)]
            for m in sent:
                await pub.send(m)
            assert [await sub.recv() for _ in sent] == sent


async def case_large_message_round_trip():
    async with websockets.connect(BASE + "ws?topics=D", max_size=None) as sub:
        await subscribed(sub)
        async with websockets.connect(BASE + "pub") as pub:
            big = msg("D", 0, pad=400_000)
            await pub.send(big)
            assert await sub.recv() == big


async def case_no_compression_offered_gets_plain_frames():
    async with websockets.connect(BASE + "ws?topics=E", compression=None) as sub:
        assert sub.protocol.extensions == []
        await subscribed(sub)
        async with websockets.connect(BASE + "pub") as pub:
            await pub.send(msg("E", 1))
            assert await sub.recv() == msg("E", 1)


if __name__ == "__main__":
    cases.run(globals())
