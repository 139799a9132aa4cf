"""Python `websockets` as an independent echo server for our client.

Prints 'listening on PORT' once bound to 127.0.0.1 on a port the OS picks, echoes
every message, and exits when stdin closes (so it dies with the test that started it).
Pings are answered by the library. A message 'close:CODE' makes the server close with
that code, to test the client side of the close handshake.
"""
import asyncio
import sys

import websockets


async def handler(ws):
    async for message in ws:
        if isinstance(message, str) and message.startswith("close:"):
            await ws.close(int(message[6:]), "server closes")
            return
        await ws.send(message)


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
