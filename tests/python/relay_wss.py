"""Python `websockets` over the standard library's `ssl` against `feedrelay run` with
`tls_cert_file`: a publisher and a subscriber per TLS version (1.2 and 1.3), each
verifying the relay's certificate against the test CA.

Usage: python relay_wss.py wss://localhost:PORT/ CA_FILE
Prints the negotiated versions and a closing 'N passed, M failed' line.
"""
import asyncio
import json
import ssl
import sys

import websockets

import cases

BASE, CA = sys.argv[1], sys.argv[2]
TIMEOUT = 10


def context(version):
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


async def relay_over(version):
    ctx = context(version)
    async with websockets.connect(BASE + "ws?topics=T", ssl=ctx) as sub, \
            websockets.connect(BASE + "pub", ssl=ctx) as pub:
        negotiated = sub.transport.get_extra_info("ssl_object").version()
        print("negotiated", negotiated, flush=True)
        reply = json.loads(await asyncio.wait_for(sub.recv(), TIMEOUT))
        assert reply == {"event": "subscribed", "topics": ["T"]}, reply
        for n in range(50):
            await pub.send(json.dumps({"s": "T", "n": n}))
        got = [json.loads(await asyncio.wait_for(sub.recv(), TIMEOUT))["n"] for _ in range(50)]
        assert got == list(range(50)), got[:5]
        return negotiated


async def case_tls_1_2():
    assert await relay_over(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


async def case_tls_1_3():
    assert await relay_over(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


async def case_untrusted_certificate_is_refused():
    ctx = ssl.create_default_context()  # the system roots only: our test CA is not there
    try:
        async with websockets.connect(BASE + "ws?topics=T", ssl=ctx):
            raise AssertionError("connected without trusting the CA")
    except ssl.SSLCertVerificationError:
        pass


if __name__ == "__main__":
    cases.run(globals())
