"""The generator process: ramps calls and streams step by step and measures each step.

``python -m bench.driver PLAN.json RESULT.json`` (bench/run.py starts it pinned to core 1,
after the gateway). Every step adds calls up to its count at ``setup_rate`` per second,
attaches a stream to each new call, lets them settle ``warmup_s``, then measures
``hold_s``: frames lost and duplicated each way, added latency each way, the gateway's CPU
and RSS (from /proc), /healthz round trips (event-loop lag seen from outside), the
generator's own CPU (a step where it passed ``VOID_GENERATOR_CPU`` is void).

On the binary wires the driver attaches each stream through the API; on the JSON wires
(plivo, voxology) the call's route starts it and the gateway dials the generator's
``StreamServer``: the driver only waits until every new call's stream has named its call.
A one-way wire (voxology) is judged on the RTP -> WS direction alone; its WS -> RTP
figures are None.
"""

from __future__ import annotations

import array
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import numpy as np

from bench.loadgen import (
    FRAME_S,
    HOST,
    JSON_WIRES,
    ONE_WAY_WIRES,
    Call,
    LoadPlan,
    MediaClock,
    RtpHub,
    Samples,
    SipClient,
    StreamServer,
    WsClient,
    bind_udp,
    busy_seconds_per_core,
    cpu_seconds,
    new_call,
    percentiles_ms,
    plan_from_json,
    plivo_answer_xml,
    rss_bytes,
    steal_seconds_per_core,
)

VOID_GENERATOR_CPU = 0.70
GRACE_S = 0.6  # frames still in flight when a window closes are counted after this
SETUP_TIMEOUT_S = 8.0
STREAM_CONCURRENCY = 16
JSON_STREAM_TIMEOUT_S = 15.0  # the gateway retries a refused dial for ~2.5 s


class Bench:
    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.conference_ws: WsClient | None = None
        self.loop = asyncio.get_running_loop()
        self.samples = Samples()
        self.calls: list[Call] = []
        self.api_url = f"http://{HOST}:{plan.http_port}"
        self.setup_s: list[float] = []
        self.stream_s: list[float] = []
        self.errors: list[str] = []
        self.healthz_s: array.array[float] = array.array("d")
        self.healthz_extra: dict[str, Any] = {}
        self.conference_id = ""
        self.json_wire = plan.wire in JSON_WIRES and not plan.conference
        self.two_way = plan.wire not in ONE_WAY_WIRES or plan.conference
        self.streams: StreamServer | None = None
        budget_s = 5.0 + len(plan.steps) * (plan.hold_s + plan.warmup_s + 3 * GRACE_S + 2)
        budget_s += max(plan.steps) / plan.setup_rate * 4 + 30
        self.max_ticks = int(budget_s / FRAME_S)

    async def start(self) -> None:
        self.rtp_sock = bind_udp()
        rtp_port = self.rtp_sock.getsockname()[1]
        self.hub = RtpHub(self.samples)
        await self.loop.create_datagram_endpoint(lambda: self.hub, sock=self.rtp_sock)
        self.sip = SipClient((HOST, self.plan.sip_port), rtp_port)
        await self.loop.create_datagram_endpoint(lambda: self.sip, sock=bind_udp())
        if self.json_wire:  # listening before the first call's flow dials it
            xml = plivo_answer_xml(self.plan.stream_port)
            self.streams = StreamServer(self.plan.wire, self.samples, xml)
            self.stream_server = await self.loop.create_server(
                self.streams.protocol, HOST, self.plan.stream_port, backlog=1024
            )
        self.clock = MediaClock(self.loop, self.hub, self.plan.send_phases)
        self.clock.begin()
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.plan.token}"})
        self.lag_task = self.loop.create_task(self._watch_healthz())
        if self.plan.conference:
            self.hub.shared_sent = self.clock.shared_sent
            body = await self.api("POST", "/v1.0/conferences", {"name": "bench"})
            self.conference_id = body["id"]

    async def api(self, method: str, path: str, body: object | None = None) -> Any:
        for attempt in range(5):
            async with self.http.request(method, self.api_url + path, json=body) as response:
                data = await response.json()
                if response.status < 300:
                    return data
                if response.status != 503 or attempt == 4:
                    raise RuntimeError(f"{method} {path}: {response.status} {data}")
                self.errors.append(f"{method} {path}: 503, retried")
            await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def _watch_healthz(self) -> None:
        while True:
            began = time.perf_counter()
            try:
                async with self.http.get(self.api_url + "/healthz") as response:
                    body = await response.json()
                self.healthz_s.append(time.perf_counter() - began)
                self.healthz_extra = {
                    k: v
                    for k, v in body.items()
                    if k.startswith(("media_clock", "gc_full", "conference_"))
                }
            except aiohttp.ClientError as exc:
                self.errors.append(f"healthz: {exc}")
            await asyncio.sleep(0.25)

    # -- calls -----------------------------------------------------------------------------
    async def add_calls(self, count: int) -> tuple[float, list[float]]:
        began = time.perf_counter()
        placed: list[asyncio.Task[Call | None]] = []
        for _ in range(count):
            call = new_call(len(self.calls) + len(placed), self.max_ticks)
            placed.append(self.loop.create_task(self._place(call)))
            await asyncio.sleep(1.0 / self.plan.setup_rate)
        done = [call for call in await asyncio.gather(*placed) if call is not None]
        elapsed = time.perf_counter() - began
        self.calls.extend(done)
        await self._find_call_ids(done)
        for call in done:
            self.clock.add(call)
        return len(done) / elapsed, [call.setup_s for call in done]

    async def _place(self, call: Call) -> Call | None:
        call.answered = self.loop.create_future()
        call.invite_at = time.perf_counter()
        self.sip.invite(call, self.plan.route)
        for _ in range(int(SETUP_TIMEOUT_S / 0.5)):
            try:
                await asyncio.wait_for(asyncio.shield(call.answered), 0.5)
                return call
            except TimeoutError:
                self.sip.invite(call, self.plan.route)  # Timer A, roughly
            except ConnectionError as exc:
                self.errors.append(f"call {call.index}: {exc}")
                return None
        self.errors.append(f"call {call.index}: no answer in {SETUP_TIMEOUT_S} s")
        return None

    async def _find_call_ids(self, calls: list[Call]) -> None:
        wanted = {call.sip_call_id: call for call in calls}
        for _ in range(50):
            token: str | None = None
            while True:
                query = "status=progressing&page_size=100" + (
                    f"&page_token={token}" if token else ""
                )
                body = await self.api("GET", f"/v1.0/calls?{query}")
                for record in body["result"]:
                    call = wanted.pop(record.get("sip_call_id") or "", None)
                    if call is not None:
                        call.call_id = record["id"]
                token = body.get("next_page_token")
                if not token or not wanted:
                    break
            if not wanted:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{len(wanted)} answered calls never showed in /v1.0/calls")

    async def attach_streams(self, calls: list[Call]) -> list[float]:
        gate = asyncio.Semaphore(STREAM_CONCURRENCY)
        times: list[float] = []

        async def attach(call: Call) -> None:
            async with gate:
                began = time.perf_counter()
                await self._open_ws(call, f"/v1.0/calls/{call.call_id}/media_stream", True)
                times.append(time.perf_counter() - began)

        await asyncio.gather(*(attach(call) for call in calls))
        return times

    async def await_json_streams(self, calls: list[Call]) -> list[float]:
        """JSON wires: the flow of each call has dialled our server; wait until every
        call's stream has said which call it carries. Returns answer -> first message."""
        assert self.streams is not None
        streams = self.streams
        waits = [streams.expect(call) for call in calls]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=JSON_STREAM_TIMEOUT_S)
            if pending:
                raise RuntimeError(
                    f"{len(pending)} of {len(calls)} streams never reached the generator's "
                    f"server ({streams.connections} connections, {streams.answers} answer "
                    f"URL requests, {len(streams.unclaimed)} streams of unknown calls)"
                )
        pairs = zip(calls, waits, strict=True)
        return [wait.result() - (call.invite_at + call.setup_s) for call, wait in pairs]

    async def _open_ws(self, call: Call, path: str, echo: bool) -> WsClient:
        query = f"?token={self.plan.token}&encapsulation={self.plan.wire}"
        shared = self.clock.shared_sent if self.plan.conference else None

        def client() -> WsClient:
            return WsClient(call, self.plan.wire, self.samples, path + query, echo, shared)

        _, protocol = await self.loop.create_connection(client, HOST, self.plan.http_port)
        await protocol.upgraded
        call.ws = protocol
        return protocol

    async def join_conference(self, calls: list[Call]) -> None:
        for call in calls:
            call.speaking = False
            path = f"/v1.0/conferences/{self.conference_id}/calls"
            await self.api("POST", path, {"call_id": call.call_id})

    async def rotate_speaker(self) -> None:
        turn = 0
        while True:
            speakers = [call for call in self.calls if call.media_on]
            if speakers:  # the clock makes the change at the next tick's start
                self.clock.next_speaker = speakers[turn % len(speakers)]
            turn += 1
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self.lag_task.cancel()
        for call in self.calls:
            if call.ws is not None:
                call.ws.close()
            call.media_on = False
            self.sip.bye(call)
        await asyncio.sleep(1.0)
        self.clock.stop()
        await self.http.close()
        if self.streams is not None:
            self.stream_server.close()

    # -- one step ---------------------------------------------------------------------------
    async def step(self, target: int) -> dict[str, Any]:
        plan = self.plan
        new_count = target - len(self.calls)
        rate, setups = await self.add_calls(new_count) if new_count > 0 else (0.0, [])
        fresh = self.calls[-len(setups) :] if setups else []
        if plan.conference:
            await self.join_conference(fresh)
            if self.conference_ws is None:
                listener = new_call(-1, self.max_ticks)
                path = f"/v1.0/conferences/{self.conference_id}/media_stream"
                self.conference_ws = await self._open_ws(listener, path, False)
            stream_times: list[float] = []
        elif self.json_wire:
            stream_times = await self.await_json_streams(fresh)
        else:
            stream_times = await self.attach_streams(fresh)
        await asyncio.sleep(plan.warmup_s)
        first_tick = self.clock.tick + 1
        gateway_cpu, own_cpu, began = (
            cpu_seconds(plan.gateway_pid),
            time.process_time(),
            time.perf_counter(),
        )
        cores, steal = busy_seconds_per_core(), steal_seconds_per_core()
        self.samples.clear()
        self.healthz_s = array.array("d")
        self.clock.late_max_s = 0.0
        await asyncio.sleep(plan.hold_s)
        last_tick = self.clock.tick  # ticks [first_tick, last_tick) are judged
        wall = time.perf_counter() - began
        gateway_cpu = (cpu_seconds(plan.gateway_pid) - gateway_cpu) / wall
        own_cpu = (time.process_time() - own_cpu) / wall
        cores = [(b - a) / wall for a, b in zip(cores, busy_seconds_per_core(), strict=True)]
        steal = [(b - a) / wall for a, b in zip(steal, steal_seconds_per_core(), strict=True)]
        # other engineers' tests share this machine: what they took is reported, not hidden;
        # so is the time the hypervisor gave to other guests (steal: in "busy", not ours)
        others = max(0.0, sum(cores) - sum(steal) - gateway_cpu - own_cpu)
        to_ws = percentiles_ms(self.samples.to_ws)
        to_rtp = percentiles_ms(self.samples.to_rtp) if self.two_way else None
        healthz = percentiles_ms(self.healthz_s)
        await asyncio.sleep(GRACE_S)
        judged = [
            call for call in self.calls if 0 <= call.first_tick < first_tick and call.media_on
        ]
        counts: dict[str, Any]
        if plan.conference:
            counts = self._conference_counts(judged, first_tick, last_tick)
        else:
            counts = self._counts(judged, first_tick, last_tick, self.two_way)
        rss = rss_bytes(plan.gateway_pid)
        streams = len(self.calls)
        result: dict[str, Any] = {
            "streams": streams,
            "judged_calls": len(judged),
            "ticks": last_tick - first_tick,
            **counts,
            "latency_rtp_to_ws_ms": to_ws,
            "latency_ws_to_rtp_ms": to_rtp,
            "gateway_cpu_pct": round(100 * gateway_cpu, 2),
            "gateway_cpu_pct_per_stream": round(100 * gateway_cpu / max(streams, 1), 4),
            "gateway_rss_mb": round(rss / 2**20, 1),
            "gateway_rss_kb_per_stream": round(rss / 1024 / max(streams, 1), 1),
            "healthz_rtt_ms": healthz,
            "healthz_clock_fields": dict(self.healthz_extra),
            "generator_cpu_pct": round(100 * own_cpu, 2),
            "gateway_to_generator_cpu": round(gateway_cpu / own_cpu, 3) if own_cpu else None,
            "generator_clock_late_max_ms": round(1000 * self.clock.late_max_s, 3),
            "void": own_cpu > VOID_GENERATOR_CPU,
            "core_busy_pct": [round(100 * c, 1) for c in cores],
            "other_processes_cpu_pct": round(100 * others, 1),
            "core_steal_pct": [round(100 * c, 1) for c in steal],
            "setup_rate_per_s": round(rate, 1),
            "setup_ms": percentiles_ms(array.array("d", setups)) if setups else None,
            "setup_p95_ms": round(float(np.percentile(setups, 95)) * 1000, 3) if setups else None,
            "stream_attach_p95_ms": (
                round(float(np.percentile(stream_times, 95)) * 1000, 3) if stream_times else None
            ),
            "errors": (self.errors + (self.streams.errors if self.streams else []))[-5:],
            "byes_from_gateway": self.sip.byes_received,
        }
        result["held"] = self._held(result)
        return result

    def _held(self, result: dict[str, Any]) -> bool:
        """Zero loss and duplication, p99 within target, both ways (one-way wires: RTP->WS)."""
        plan = self.plan
        to_ws, to_rtp = result["latency_rtp_to_ws_ms"], result["latency_ws_to_rtp_ms"]
        lossless = result["lost_to_ws"] == 0 and result["dup_to_ws"] == 0
        if not self.two_way:
            in_time = to_ws["p99"] is not None and to_ws["p99"] <= plan.ws_p99_target_ms
            ok = lossless and in_time and not result["void"] and not result["byes_from_gateway"]
            return bool(ok)
        lossless = lossless and result["lost_to_rtp"] == 0 and result["dup_to_rtp"] == 0
        if plan.conference:
            target = plan.conference_p99_target_ms
            in_time = all(
                p99 is not None and p99 <= target for p99 in (to_rtp["p99"], to_ws["p99"])
            )
        else:
            in_time = to_rtp["p99"] is not None and to_rtp["p99"] <= plan.rtp_p99_target_ms
            in_time = in_time and to_ws["p99"] is not None and to_ws["p99"] <= plan.ws_p99_target_ms
        return bool(lossless and in_time and not result["void"] and not result["byes_from_gateway"])

    @staticmethod
    def _counts(calls: list[Call], first: int, last: int, two_way: bool) -> dict[str, int | None]:
        """Per tick of the window: heard on the stream 0 or >1 times; echoed frames that
        came back on RTP 0 or more times than heard (None for a one-way wire)."""
        lost_ws = dup_ws = lost_rtp = dup_rtp = 0
        for call in calls:
            ws = np.frombuffer(call.heard_ws, dtype=np.uint8)[first:last].astype(np.int16)
            lost_ws += int(np.count_nonzero(ws == 0))
            dup_ws += int(np.clip(ws - 1, 0, None).sum())
            if two_way:
                rtp = np.frombuffer(call.heard_rtp, dtype=np.uint8)[first:last].astype(np.int16)
                lost_rtp += int(np.count_nonzero((ws > 0) & (rtp == 0)))
                dup_rtp += int(np.clip(rtp - ws, 0, None).sum())
        return {
            "lost_to_ws": lost_ws,
            "dup_to_ws": dup_ws,
            "lost_to_rtp": lost_rtp if two_way else None,
            "dup_to_rtp": dup_rtp if two_way else None,
        }

    def _conference_counts(self, calls: list[Call], first: int, last: int) -> dict[str, int]:
        """Every tick one participant speaks; each other participant should hear it once,
        and so should the conference's stream (its 'to_ws' direction).

        Ticks next to a change of speaker are not judged: the two speakers' frames reach
        the gateway at different phases of its tick, so around the change the mix holds
        both markers for one tick, or neither (the new speaker's first frame is mixed a
        tick later), with every frame still heard once. ``transition_ticks`` says how
        many ticks that set aside.
        """
        judged = np.ones(last - first, dtype=bool)
        for switch in self.clock.switch_ticks:
            lo, hi = (
                max(switch - SWITCH_MARGIN_TICKS, first),
                min(switch + SWITCH_MARGIN_TICKS, last),
            )
            if lo < hi:
                judged[lo - first : hi - first] = False
        lost_rtp = dup_rtp = 0
        for call in calls:
            heard = np.frombuffer(call.heard_rtp, dtype=np.uint8)[first:last].astype(np.int16)
            heard = heard[judged]
            lost_rtp += int(np.count_nonzero(heard == 0))
            dup_rtp += int(np.clip(heard - 1, 0, None).sum())
        lost_ws = dup_ws = 0
        if self.conference_ws is not None:
            ws = np.frombuffer(self.conference_ws.call.heard_ws, dtype=np.uint8)[first:last]
            ws = ws[judged]
            lost_ws = int(np.count_nonzero(ws == 0))
            dup_ws = int(np.clip(ws.astype(np.int16) - 1, 0, None).sum())
        # the speaker does not hear itself: one 'lost' per tick is expected, not a loss
        lost_rtp -= int(judged.sum())
        return {
            "lost_to_ws": lost_ws,
            "dup_to_ws": dup_ws,
            "lost_to_rtp": max(lost_rtp, 0),
            "dup_to_rtp": dup_rtp,
            "transition_ticks": int((~judged).sum()),
        }


SWITCH_MARGIN_TICKS = 2
"""Ticks set aside on each side of a change of speaker (conference mode)."""


async def run(plan: LoadPlan, report: Any = None) -> dict[str, Any]:
    """Run every step of ``plan``; ``report(step_result)`` is called after each."""
    bench = Bench(plan)
    await bench.start()
    rotation = bench.loop.create_task(bench.rotate_speaker()) if plan.conference else None
    steps: list[dict[str, Any]] = []
    try:
        for target in plan.steps:
            try:
                result = await bench.step(target)
            except (RuntimeError, OSError, aiohttp.ClientError) as exc:
                bench.errors.append(f"step {target} abandoned: {exc}")  # what held is kept
                break
            steps.append(result)
            if report is not None:
                report(result)
            if not result["held"] and not plan.extra.get("keep_going"):
                break
    finally:
        if rotation is not None:
            rotation.cancel()
        await bench.stop()
    return {"steps": steps, "errors": bench.errors}


def main() -> None:
    plan = plan_from_json(open(sys.argv[1]).read())

    def report(result: dict[str, Any]) -> None:
        print(json.dumps(result), flush=True)

    try:
        import uvloop

        outcome = uvloop.run(run(plan, report))
    except ImportError:
        outcome = asyncio.run(run(plan, report))
    with open(sys.argv[2], "w") as file:
        json.dump(outcome, file, indent=1)


if __name__ == "__main__":
    main()
