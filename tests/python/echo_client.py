"""Python `websockets` as an independent client against `feedrelay echo`.

Usage: python echo_client.py ws://127.0.0.1:PORT/
Runs every case, prints one line per case and a closing 'N passed, M failed' line;
exits non-zero if any case failed.
"""
import asyncio
import sys

import websockets

import cases
from websockets.exceptions import ConnectionClosed

URL = sys.argv[1]
TIMEOUT = 10


async def connect():
    return await websockets.connect(URL, max_size=None, compression=None, open_timeout=TIMEOUT)


async def echo(ws, message):
    await ws.send(message)
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert type(got) is type(message), f"type {type(got)} != {type(message)}"
    assert got == message, "payload differs"


async def case_text():
    async with await connect() as ws:
        for s in ["hello", "κόσμε 𝄞", "x" * 125, "y" * 126, "z" * 65536]:
            await echo(ws, s)


async def case_binary():
    async with await connect() as ws:
        for b in [b"\x00\x01\xff", bytes(range(256)) * 300]:
            await echo(ws, b)


async def case_empty():
    async with await connect() as ws:
        await echo(ws, "")
        await echo(ws, b"")


async def case_one_mib():
    async with await connect() as ws:
        await echo(ws, bytes(i % 251 for i in range(1 << 20)))
        await echo(ws, "m" * (1 << 20))


async def case_fragmented():
    async with await connect() as ws:
        await ws.send(["frag", "men", "ted ", "κό", "σμε"])
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert got == "fragmented κόσμε", got
        await ws.send([b"\x01", b"\x02" * 70000, b"\x03"])
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert got == b"\x01" + b"\x02" * 70000 + b"\x03"


async def case_ping():
    async with await connect() as ws:
        for payload in [b"", b"ping!", b"\xfe" * 125]:
            pong = await ws.ping(payload)
            latency = await asyncio.wait_for(pong, TIMEOUT)
            assert latency >= 0


async def case_close_codes():
    codes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
    for code in codes:
        ws = await connect()
        await ws.close(code, "bye")
        # The server echoes the code of the close it received.
        assert ws.protocol.close_rcvd is not None, f"{code}: no close frame received"
        assert ws.protocol.close_rcvd.code == code, f"{code}: server answered {ws.protocol.close_rcvd.code}"


async def case_invalid_utf8_is_1007():
    ws = await connect()
    # Bytes sent as a text frame without validation by the library.
    await ws.send(b"valid start \xce\xba then \xff invalid", text=True)
    try:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        raise AssertionError("server echoed invalid UTF-8")
    except ConnectionClosed:
        pass
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1007, ws.protocol.close_rcvd


cases.run(globals())
