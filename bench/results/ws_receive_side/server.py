"""Side benchmark: server CPU per received 172-byte binary message, aiohttp vs picows."""

import asyncio
import resource
import sys
import time

import uvloop

MODE, PORT, EXPECTED = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
count = 0
done = asyncio.Event()
start_cpu = None


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def got() -> None:
    global count, start_cpu
    if count == 0:
        start_cpu = (cpu(), time.perf_counter())
    count += 1
    if count == EXPECTED:
        done.set()


async def run_aiohttp() -> None:
    from aiohttp import WSMsgType, web

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                got()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    await done.wait()


async def run_picows() -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    class L(WSListener):
        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.BINARY:
                frame.get_payload_as_bytes()
                got()

    _server = await ws_create_server(lambda _r: L(), "127.0.0.1", PORT)
    await done.wait()


async def main() -> None:
    await (run_aiohttp() if MODE == "aiohttp" else run_picows())
    c, t = cpu() - start_cpu[0], time.perf_counter() - start_cpu[1]
    print(
        print(
            f"{MODE}: {count} messages in {t:.2f} s, server CPU {c:.3f} s = "
            f"{c / count * 1e6:.1f} us/message, {100 * c / t:.1f} % of a core"
        )
    )


uvloop.run(main())
