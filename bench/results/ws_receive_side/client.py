"""N connections, each sends one masked (key 0) 172-byte binary frame every 20 ms."""

import asyncio
import base64
import os
import sys

import uvloop

PORT, N, SECONDS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
FRAME = b"\x82\xfe\x00\xac" + b"\x00\x00\x00\x00" + bytes(172)


async def connect():
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write(
        w.write(
            (
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
    )
    await r.readuntil(b"\r\n\r\n")
    return w


async def main():
    writers = [await connect() for _ in range(N)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for tick in range(int(SECONDS * 50)):
        for w in writers:
            w.write(FRAME)
        await asyncio.sleep(max(0, t0 + (tick + 1) * 0.02 - loop.time()))
    await asyncio.sleep(1)


uvloop.run(main())
