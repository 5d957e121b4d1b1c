"""One command: start the gateway on core 0, the load generator on core 1, ramp, report.

    .venv/bin/python -m bench.run [--wire rtp|sln|audiosocket|plivo|voxology]
                                  [--steps 50,100,200,300,400] [--hold 20] [--conference]
                                  [--out bench/results]

The gateway is ``callstream serve`` with three routes, its own SQLite file in a temporary
directory and free ports on 127.0.0.1: ``bench`` (answer, then sleep an hour; the binary
wires attach to it through the API), ``bench-plivo`` (an answer URL served by the
generator: a bidirectional μ-law ``<Stream>`` to the generator, then ``<Wait>`` an hour)
and ``bench-voxology`` (a Voxology script: ANSWER, STREAM the caller track to the
generator, PAUSE an hour). The generator is
``python -m bench.driver`` (bench/loadgen.py, bench/driver.py). Each step's figures are
printed as they come; at the end a table is printed and ``<out>/<name>.json`` and
``<out>/<name>.png`` are written. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.loadgen import JSON_WIRES, MAX_SEND_PHASES, ONE_WAY_WIRES, SEND_PHASES

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GATEWAY_CONFIG = """
max_calls = 5000
rtp_timeout = 60
[[routes]]
match = "bench"
account = "bench"
actions = [ {{ type = "answer" }}, {{ type = "sleep", option = {{ duration = 3600000 }} }} ]

[[routes]]
match = "bench-plivo"
account = "bench"
answer_url = "http://{host}:{stream_port}/answer"
answer_method = "GET"

[[routes]]
match = "bench-voxology"
account = "bench"
[[routes.actions]]
type = "ANSWER"
[[routes.actions]]
type = "STREAM"
params = {{ url = "ws://{host}:{stream_port}/voxology", tracks = ["caller"] }}
[[routes.actions]]
type = "PAUSE"
params = {{ seconds = 3600 }}
"""
ROUTES = {"plivo": "bench-plivo", "voxology": "bench-voxology"}
"""The route a wire's calls go to (the SIP Request-URI's user); "bench" for the others."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_sip_port() -> int:
    """A port free for both UDP and TCP: the gateway listens for SIP on both."""
    while True:
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port


START_ATTEMPTS = 3
"""The ports are picked free, then bound by the gateway a moment later: another process
may take one in between (seen in CI), so a start that fails on a bind is retried."""


def pinned(core: int, argv: list[str]) -> list[str]:
    """``taskset -c core argv`` when the machine has the core and taskset; else argv."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *argv]
    return argv


PROBE_SOURCE = """
import time
def work():
    total, table = 0, {}
    for n in range(1_000_000):
        total += n & 7
        table[n & 255] = total
    return total
best = min(
    (lambda start: (work(), time.perf_counter() - start)[1])(time.perf_counter())
    for _ in range(3)
)
print(round(best * 1000, 1))
"""
"""A fixed pure-Python loop (the kind of work that dominates the gateway's core: bytecode,
dicts, ints), best of 3. It does not change with callstream's code, so its time tells how
fast the host is; the same code measured 0.15 and 0.45 % of a core per stream on two
hosts of this machine kind (bench/RESULTS.md, sixth and seventh sessions)."""


def host_probe_ms(core: int = 0) -> float | None:
    """How long the probe takes on ``core`` (the gateway's), in ms; None if it fails."""
    argv = pinned(core, [sys.executable, "-c", PROBE_SOURCE])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return float(done.stdout.strip())
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


class GatewayProcess:
    def __init__(self, workdir: Path, rtp_first: int, stream_port: int) -> None:
        self.database_url = f"sqlite:///{workdir / 'bench.db'}"
        config = workdir / "gateway.toml"
        config.write_text(GATEWAY_CONFIG.format(host=HOST, stream_port=stream_port))
        self.log_path = workdir / "gateway.log"
        for attempt in range(1, START_ATTEMPTS + 1):
            self.sip_port = free_sip_port()
            self.http_port = free_port()
            argv = [sys.executable, "-m", "callstream", "serve", "--config", str(config)]
            argv += ["--sip-port", str(self.sip_port), "--http-port", str(self.http_port)]
            argv += ["--rtp-ports", f"{rtp_first}-{rtp_first + 9999}", "--log-level", "warning"]
            argv += ["--database-url", self.database_url]
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
            self.process = subprocess.Popen(
                pinned(0, argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            try:
                self.wait_ready()
                return
            except RuntimeError:
                self.stop()
                if attempt == START_ATTEMPTS or "already in use" not in self.log_path.read_text():
                    raise

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gateway not ready in time")

    def token(self) -> str:
        argv = [sys.executable, "-m", "callstream", "token", "create", "--account", "bench"]
        argv += ["--database-url", self.database_url]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

    def playout_dropped_frames(self) -> int | None:
        """Frames of client audio the gateway says it dropped on purpose over the whole run:
        the sum of its stream records' ``frames_dropped_overflow`` (a real-time sender's
        standing backlog trimmed, frames of ticks a stalled clock skipped, overflow). Read
        from its SQLite file once it has exited (it writes every record before it exits);
        None if the file has no stream records table (the gateway never started)."""
        path = self.database_url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as db:
            try:
                row = db.execute("SELECT SUM(frames_dropped_overflow) FROM media_streams")
            except sqlite3.OperationalError:
                return None
            (total,) = row.fetchone()
        return int(total or 0)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    steps = tuple(int(n) for n in args.steps.split(","))
    probe_before = host_probe_ms()
    print(f"host probe (core 0, before): {_fmt(probe_before)} ms", flush=True)
    with tempfile.TemporaryDirectory(prefix="callstream-bench-") as tmp:
        workdir = Path(tmp)
        stream_port = free_port()  # the generator's server for the JSON wires
        gateway = GatewayProcess(workdir, args.rtp_first, stream_port)
        try:
            plan = {
                "gateway_pid": gateway.process.pid,
                "sip_port": gateway.sip_port,
                "http_port": gateway.http_port,
                "token": gateway.token(),
                "wire": args.wire,
                "steps": steps,
                "hold_s": args.hold,
                "warmup_s": args.warmup,
                "setup_rate": args.setup_rate,
                "conference": args.conference,
                "route": ROUTES.get(args.wire, "bench"),
                "stream_port": stream_port,
                "send_phases": args.send_phases,
                "extra": {"keep_going": args.keep_going},
            }
            plan_path, result_path = workdir / "plan.json", workdir / "result.json"
            plan_path.write_text(json.dumps(plan))
            argv = [sys.executable, "-m", "bench.driver", str(plan_path), str(result_path)]
            budget_s = 120 + len(steps) * (args.hold + args.warmup + 30)
            generator = subprocess.Popen(
                pinned(1, argv), cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            assert generator.stdout is not None
            print_header(args)
            for line in generator.stdout:
                if line.startswith("{"):
                    print_row(json.loads(line), flush=True)
                else:
                    print(line, end="")
            generator.wait(budget_s)
            generator.stdout.close()
            if generator.returncode != 0:
                raise RuntimeError(f"load generator exited {generator.returncode}")
            outcome: dict[str, Any] = json.loads(result_path.read_text())
        finally:
            code = gateway.stop()
            log_tail = gateway.log_path.read_text(errors="replace")[-3000:]
        playout_dropped = gateway.playout_dropped_frames()
    probe_after = host_probe_ms()
    print(f"host probe (core 0, after): {_fmt(probe_after)} ms", flush=True)
    outcome.update(
        {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "wire": args.wire,
            "mode": mode(args),
            "hold_s": args.hold,
            "machine": machine() | {"probe_ms_before": probe_before, "probe_ms_after": probe_after},
            "send_phases": args.send_phases,
            "gateway_exit": code,
            "gateway_log_tail": log_tail,
            "last_step_held": last_held(outcome["steps"]),
            "gateway_playout_dropped_frames": playout_dropped,
        }
    )
    return outcome


def last_held(steps: list[dict[str, Any]]) -> int | None:
    held = None
    for step in steps:
        if not step["held"]:
            break
        held = step["streams"]
    return held


COLUMNS = (
    ("streams", 7), ("lost→ws", 8), ("lost→rtp", 8), ("dup", 5), ("ws p50", 7), ("ws p99", 7),
    ("ws p99.9", 8), ("rtp p50", 7), ("rtp p99", 7), ("cpu %", 6), ("%/strm", 7),
    ("RSS MB", 7), ("hz p99", 7), ("setup/s", 7), ("setup95", 7), ("gen %", 6), ("gw/gen", 6),
    ("other%", 6), ("held", 4),
)  # fmt: skip


def mode(args: argparse.Namespace) -> str:
    if args.conference:
        return "conference"
    if args.wire in ONE_WAY_WIRES:
        return "one-way streams (RTP→WS only)"
    return "two-way streams"


def print_header(args: argparse.Namespace) -> None:
    what = "conference" if args.conference else f"{mode(args)}, wire {args.wire}"
    print(
        f"callstream bench: {what}; RTP sent in {args.send_phases} bursts per 20 ms;"
        " latencies in ms; cpu % of one core",
        flush=True,
    )
    print(" ".join(name.rjust(width) for name, width in COLUMNS), flush=True)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def print_row(step: dict[str, Any], flush: bool = False) -> None:
    """One step as a table row; "-" where a figure does not apply (one-way wire's WS→RTP)."""
    ws = step["latency_rtp_to_ws_ms"]
    rtp = step["latency_ws_to_rtp_ms"] or {"p50": None, "p99": None}
    values = (
        step["streams"], step["lost_to_ws"], step["lost_to_rtp"],
        step["dup_to_ws"] + (step["dup_to_rtp"] or 0), ws["p50"], ws["p99"], ws["p999"],
        rtp["p50"], rtp["p99"], step["gateway_cpu_pct"], step["gateway_cpu_pct_per_stream"],
        step["gateway_rss_mb"], step["healthz_rtt_ms"]["p99"], step["setup_rate_per_s"],
        step["setup_p95_ms"], step["generator_cpu_pct"], step["gateway_to_generator_cpu"],
        step["other_processes_cpu_pct"],
        "VOID" if step["void"] else ("yes" if step["held"] else "no"),
    )  # fmt: skip
    cells = (_fmt(v).rjust(width) for v, (_, width) in zip(values, COLUMNS, strict=True))
    print(" ".join(cells), flush=flush)


def draw(outcome: dict[str, Any], path: Path) -> bool:
    """Streams vs gateway CPU and vs latency p99, one PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = outcome["steps"]
    streams = [s["streams"] for s in steps]
    figure, (cpu_axis, latency_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    cpu_axis.plot(streams, [s["gateway_cpu_pct"] for s in steps], "o-", label="gateway")
    cpu_axis.plot(streams, [s["generator_cpu_pct"] for s in steps], "s--", label="generator")
    cpu_axis.axhline(100, color="grey", lw=0.8)
    cpu_axis.set(xlabel="concurrent streams", ylabel="% of one core", title="CPU")
    cpu_axis.legend()
    for key, label in (("latency_rtp_to_ws_ms", "RTP→WS"), ("latency_ws_to_rtp_ms", "WS→RTP")):
        if any(s[key] is None for s in steps):
            continue  # a one-way wire: nothing comes back on RTP
        for quantile, style in (("p50", "o-"), ("p99", "s--")):
            values = [s[key][quantile] for s in steps]
            latency_axis.plot(streams, values, style, label=f"{label} {quantile}")
    latency_axis.set(xlabel="concurrent streams", ylabel="ms", title="added latency")
    latency_axis.set_yscale("log")
    latency_axis.legend(fontsize=8)
    figure.suptitle(f"callstream bench — {outcome['mode']}, wire {outcome['wire']}")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--wire", default="rtp", choices=("rtp", "sln", "audiosocket", *JSON_WIRES))
    parser.add_argument("--steps", default="50,100,200,300,400", help="streams per step")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds measured per step")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--setup-rate", type=float, default=50.0, help="calls placed per second")
    parser.add_argument("--conference", action="store_true", help="one conference of N")
    parser.add_argument("--keep-going", action="store_true", help="run steps after a failure")
    parser.add_argument("--rtp-first", type=int, default=40000, help="gateway RTP ports from")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="", help="file name (default: mode and wire)")
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument(
        "--send-phases",
        type=int,
        default=SEND_PHASES,
        choices=range(1, MAX_SEND_PHASES + 1),
        metavar=f"1..{MAX_SEND_PHASES}",
        help=f"bursts the generator sends each 20 ms of RTP in (default {SEND_PHASES})",
    )
    args = parser.parse_args(argv)
    if args.conference and args.wire in JSON_WIRES:
        parser.error("--conference uses the conference's own stream: a binary wire only")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    outcome = run_bench(args)
    print(f"\nlast step that held (zero loss, p99 within target): {outcome['last_step_held']}")
    dropped = outcome["gateway_playout_dropped_frames"]
    print(f"gateway's own count of client frames it dropped on purpose (trim, skip): {dropped}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or ("conference" if args.conference else args.wire)
    json_path = args.out / f"{name}.json"
    json_path.write_text(json.dumps(outcome, indent=1))
    print(f"wrote {json_path}")
    if not args.no_png and outcome["steps"] and draw(outcome, args.out / f"{name}.png"):
        print(f"wrote {args.out / f'{name}.png'}")
    return outcome


if __name__ == "__main__":
    main()
