"""Python `websockets` negotiating subprotocols with `feedrelay run` configured with
`subprotocols = ["feedrelay.v1", "json"]`.

Usage: python relay_subprotocols.py ws://127.0.0.1:PORT/
Prints a closing 'N passed, M failed' line; exits non-zero on failure.
"""
import asyncio
import json
import sys

import websockets

import cases

BASE = sys.argv[1]


async def case_first_offered_that_is_served():
    async with websockets.connect(BASE + "ws?topics=A", subprotocols=["x.v9", "json", "feedrelay.v1"]) as ws:
        assert ws.subprotocol == "json", ws.subprotocol
        assert json.loads(await ws.recv())["event"] == "subscribed"


async def case_no_offer_no_subprotocol():
    async with websockets.connect(BASE + "ws?topics=A") as ws:
        assert ws.subprotocol is None, ws.subprotocol


async def case_only_unserved_offers_are_refused():
    try:
        async with websockets.connect(BASE + "pub", subprotocols=["mqtt"]):
            raise AssertionError("connected with an unserved subprotocol")
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == 400, e.response.status_code
        assert b"mqtt" in e.response.body, e.response.body


if __name__ == "__main__":
    cases.run(globals())
