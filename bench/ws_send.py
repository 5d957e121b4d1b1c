"""Side benchmark: the CPU a stream the gateway dials spends sending media messages.

    .venv/bin/python -m bench.ws_send [--streams 200] [--seconds 3] [--rounds 3]

An aiohttp server on 127.0.0.1 that reads and discards (a process of its own, so that
only the sending side is measured), and ``--streams`` client-side sockets to it (as the
gateway dials Plivo/Voxology/external media), each sending one Plivo-sized ``media``
text message (~380 bytes) per 20 ms tick. Two ways of sending, alternated in rounds so
that both see the same machine: ``direct`` (callstream's ``WebSocketSender``: masked
and written at once) and ``queued`` (the same sender made to queue every message for
its writer task, as it did for client sockets before). It prints the sending process's
CPU per message for each round and the ratio; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

from callstream.io.websocket import WebSocketSender
from callstream.wire.base import Message

TICK_S = 0.020
MESSAGE = '{"event":"media","sequenceNumber":1,"streamId":"x","media":{"payload":"' + "A" * 300
MESSAGE += '"}}'


class QueuedSender(WebSocketSender):
    """Every message through the writer task (the old client-side path)."""

    def _write_now(self, message: Message) -> bool:
        return False


async def one_round(url: str, kind: str, streams: int, seconds: float) -> float:
    """CPU seconds per message sent, over ``seconds`` of ticks."""
    connector = aiohttp.TCPConnector(limit=0)  # a socket per stream, all held open
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = [await session.ws_connect(url) for _ in range(streams)]
        cls = WebSocketSender if kind == "direct" else QueuedSender
        senders = [cls(ws, f"bench-{kind}-{i}") for i, ws in enumerate(sockets)]
        loop = asyncio.get_running_loop()
        ticks = round(seconds / TICK_S)
        await asyncio.sleep(0.2)
        began_cpu, start = time.process_time(), loop.time()
        for tick in range(ticks):
            for sender in senders:
                sender.send(MESSAGE)
            await asyncio.sleep(max(0.0, start + (tick + 1) * TICK_S - loop.time()))
        await asyncio.sleep(0.05)
        used = time.process_time() - began_cpu
        for sender in senders:
            sender.close(1000, "done")
        await asyncio.gather(*(sender.wait_closed() for sender in senders))
        for ws in sockets:
            await ws.close()
    return used / (ticks * streams)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()  # the gateway runs on it too


async def serve_sink() -> None:
    """The receiving side: prints its port, reads and discards until killed."""

    async def sink(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", sink)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


async def main(args: argparse.Namespace, url: str) -> None:
    results: dict[str, list[float]] = {"direct": [], "queued": []}
    for round_number in range(1, args.rounds + 1):
        for kind in ("queued", "direct"):
            per_message = await one_round(url, kind, args.streams, args.seconds)
            results[kind].append(per_message)
            print(f"round {round_number} {kind:>6}: {per_message * 1e6:6.2f} µs CPU/message "
                  "(sending side)", flush=True)  # fmt: skip
    direct, queued = (statistics.median(results[k]) for k in ("direct", "queued"))
    print(f"median direct {direct * 1e6:.2f} µs, queued {queued * 1e6:.2f} µs per message: "
          f"direct costs {direct / queued:.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.ws_send", description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    install_uvloop()
    if arguments.serve:
        asyncio.run(serve_sink())
    else:
        argv = [sys.executable, "-m", "bench.ws_send", "--serve"]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as server:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            try:
                asyncio.run(main(arguments, f"http://127.0.0.1:{port}/ws"))
            finally:
                server.kill()
