"""Processes the interop tests drive: the gateway, SIPp, tcpdump, baresip, the CLI.

Everything binds to and talks to 127.0.0.1 only. Missing binaries skip a test on a
developer's machine and fail it in CI (``CI=true``), where scripts/test installs them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).parent / "scenarios"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of ``name``; skip the test without it, except in CI where that is a failure."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"{name} is not installed (scripts/test installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        message = f"{what} needs root (packet capture on loopback)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


# ---------------------------------------------------------------- ports


def _bindable(port: int, kinds: Sequence[int]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                return False
    return True


class PortAllocator:
    """Hands out ports free on 127.0.0.1 that no other test of this run was given.

    The ports come from 10000–30000, below the kernel's ephemeral range (32768–60999
    on Linux), so no client socket of ours (SIPp, aiohttp, WebSocket clients) can be
    given one of them between the probe and the peer's bind.
    """

    def __init__(self, low: int = 10000, high: int = 30000) -> None:
        self._next = low + (os.getpid() * 97) % (high - low - 2000)
        self._low, self._high = low, high
        self._given: set[int] = set()

    def _candidates(self, step: int) -> Iterator[int]:
        for _ in range((self._high - self._low) // step):
            port = self._next
            self._next += step
            if self._next + step >= self._high:
                self._next = self._low
            yield port

    def port(self, tcp: bool = True) -> int:
        """One port free for UDP (and TCP unless ``tcp`` is false)."""
        kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp else (socket.SOCK_DGRAM,)
        return self.block(1, kinds)

    def rtp_block(self, count: int) -> int:
        """First (even) port of ``count`` consecutive free UDP ports."""
        return self.block(count, (socket.SOCK_DGRAM,), even=True)

    def block(self, count: int, kinds: Sequence[int], even: bool = False) -> int:
        for first in self._candidates(count + (count % 2)):
            if even and first % 2:
                first += 1
            ports = range(first, first + count)
            if any(p in self._given for p in ports):
                continue
            if all(_bindable(p, kinds) for p in ports):
                self._given.update(ports)
                return first
        raise RuntimeError(f"no block of {count} free ports on {HOST}")


def wait_port_taken(port: int, timeout: float, kind: int = socket.SOCK_DGRAM) -> None:
    """Wait until some process has bound ``port`` (a peer is listening)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((HOST, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return
                raise
        time.sleep(0.05)
    raise TimeoutError(f"nothing bound {HOST}:{port} within {timeout} s")


# ---------------------------------------------------------------- call event logs

_EVENT_LINE = re.compile(r"\bcall (?P<call_id>\S+) (?P<event>[a-z_]+)(?P<rest>.*)$")
_FIELD = re.compile(r'(?P<key>[A-Za-z_][\w.-]*)=(?P<value>"(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True)
class CallEvent:
    """One ``call <call-id> <event> key=value ...`` log line."""

    call_id: str
    event: str
    fields: dict[str, str]
    line: str


def parse_events(text: str) -> list[CallEvent]:
    """Every call event line in ``text``; other lines (startup, warnings) are ignored."""
    found: list[CallEvent] = []
    for line in text.splitlines():
        match = _EVENT_LINE.search(line)
        if match is None:
            continue
        fields: dict[str, str] = {}
        for item in _FIELD.finditer(match["rest"]):
            value = item["value"]
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            fields[item["key"]] = value
        found.append(CallEvent(match["call_id"], match["event"], fields, line))
    return found


class LoggedProcess:
    """A subprocess whose stderr (and stdout) go to a file we can search while it runs."""

    def __init__(self, argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log_file = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, event: str | None = None) -> list[CallEvent]:
        parsed = parse_events(self.log())
        return parsed if event is None else [e for e in parsed if e.event == event]

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of the log matches ``pattern``; return the match."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log())
            if match is not None:
                return match
            if time.monotonic() > deadline or self.process.poll() is not None:
                # one last read: the line may have landed as the process exited
                match = regex.search(self.log())
                if match is not None:
                    return match
                state = "exited" if self.process.poll() is not None else "running"
                raise AssertionError(
                    f"no log line matching {pattern!r} within {timeout} s "
                    f"({self.argv[0]} {state});\nlog:\n{self.log()}"
                )
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            self._log_file.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._log_file.close()


# ---------------------------------------------------------------- the gateway


class Gateway(LoggedProcess):
    """A running ``callstream serve``; see tests/interop/conftest.py gateway_factory."""

    def __init__(
        self,
        workdir: Path,
        ports: PortAllocator,
        config_toml: str | None,
        flags: dict[str, object],
    ) -> None:
        self.sip_port = int(flags.pop("sip_port", 0)) or ports.port()  # type: ignore[call-overload]
        self.http_port = int(flags.pop("http_port", 0)) or ports.port(tcp=True)  # type: ignore[call-overload]
        rtp = flags.pop("rtp_ports", None)
        if rtp is None:
            first = ports.rtp_block(20)
            rtp = f"{first}-{first + 19}"
        low, high = (int(p) for p in str(rtp).split("-"))
        self.rtp_ports = (low, high)
        self.exit_code: int | None = None
        self.ready = False
        self.died_before_stop = False
        self.crashed = False
        argv = [sys.executable, "-m", "callstream", "serve"]
        if config_toml is not None:
            config_path = workdir / "gateway.toml"
            config_path.write_text(config_toml)
            argv += ["--config", str(config_path)]
        options: dict[str, object] = {
            "host": HOST,
            "sip_port": self.sip_port,
            "http_port": self.http_port,
            "rtp_ports": f"{low}-{high}",
            "log_level": "info",
            **flags,
        }
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        super().__init__(argv, workdir / "gateway.log", cwd=workdir)

    @property
    def uri_host(self) -> str:
        return f"{HOST}:{self.sip_port}"

    def health(self) -> dict[str, object] | None:
        url = f"http://{HOST}:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status != 200:
                    return None
                body: dict[str, object] = json.loads(response.read())
                return body
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gateway exited with {self.process.returncode} before ready:\n{self.log()}"
                )
            body = self.health()
            if body is not None and body.get("status") == "ok":
                self.ready = True
                return
            time.sleep(0.1)
        raise AssertionError(f"gateway not healthy within {timeout} s:\n{self.log()}")

    def live_calls(self) -> int:
        body = self.health()
        assert body is not None, "gateway /healthz did not answer"
        calls = body.get("calls")
        assert isinstance(calls, int), f"/healthz calls is not an int: {body}"
        return calls

    def crash(self) -> None:
        """SIGKILL, as a power cut would: nothing gets to run (restart tests)."""
        self.signal(signal.SIGKILL)
        self.exit_code = self.wait(10)
        self.crashed = True

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns (and remembers) the exit code."""
        if self.exit_code is None:
            self.died_before_stop = self.process.poll() is not None
            self.signal(signal.SIGTERM)
            try:
                self.exit_code = self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.exit_code = -9
        return self.exit_code


# ---------------------------------------------------------------- SIPp


@dataclass
class SippResult:
    returncode: int
    stdout: str
    errors: str
    messages: str
    port: int
    media_port: int

    def explain(self) -> str:
        return (
            f"sipp exit {self.returncode}\n--- errors:\n{self.errors}\n"
            f"--- messages:\n{self.messages[-6000:]}\n--- stdout tail:\n{self.stdout[-3000:]}"
        )


@dataclass
class Sipp:
    """One SIPp process (``-m 1``) running a scenario from tests/interop/scenarios."""

    workdir: Path
    port: int
    media_port: int
    process: subprocess.Popen[bytes]
    scenario: str
    stdout_path: Path
    _result: SippResult | None = field(default=None)

    @classmethod
    def start(
        cls,
        scenario: str,
        target: str | None,
        *args: str,
        workdir: Path,
        port: int,
        media_port: int,
        timeout: float = 30.0,
    ) -> Sipp:
        binary = require_binary("sipp")
        workdir.mkdir(parents=True, exist_ok=True)
        if scenario.startswith("builtin:"):  # SIPp's embedded scenarios (-sn uas)
            path = Path(scenario.removeprefix("builtin:"))
            argv = [binary, "-sn", str(path)]
        else:
            path = Path(scenario) if os.sep in scenario else SCENARIOS / scenario
            if not path.suffix:
                path = path.with_suffix(".xml")
            argv = [binary, "-sf", str(path)]
        argv += ["-m", "1", "-i", HOST, "-p", str(port)]
        argv += ["-mp", str(media_port), "-nostdin", "-trace_err", "-trace_msg"]
        argv += ["-timeout", f"{int(timeout)}s", "-timeout_error", "-max_recv_loops", "10000"]
        argv += list(args)
        if target is not None:
            argv.append(target)
        stdout_path = workdir / f"{path.stem}.stdout"
        with open(stdout_path, "wb") as out:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir
            )
        return cls(workdir, port, media_port, process, path.stem, stdout_path)

    def wait(self, timeout: float = 60.0) -> SippResult:
        if self._result is None:
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                code = -9

            def collect(suffix: str) -> str:
                files = sorted(self.workdir.glob(f"{self.scenario}_*_{suffix}.log"))
                return "\n".join(f.read_text(errors="replace") for f in files)

            self._result = SippResult(
                code,
                self.stdout_path.read_text(errors="replace"),
                collect("errors"),
                collect("messages"),
                self.port,
                self.media_port,
            )
        return self._result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


# ---------------------------------------------------------------- tcpdump


class Capture:
    """tcpdump of UDP on loopback to/from one port; use as a context manager."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self._stderr = path.with_suffix(".tcpdump.log")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        binary = require_binary("tcpdump")
        require_root("tcpdump")
        # -U: flush per packet so a SIGINT never loses the tail; -Z root: the pytest
        # tmp dir is not writable by the user tcpdump would otherwise drop to
        argv = [binary, "-i", "lo", "-n", "-U", "-Z", "root", "-w", str(self.path)]
        argv += ["udp", "and", "port", str(self.port)]
        with open(self._stderr, "wb") as err:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while b"listening on" not in self._stderr.read_bytes():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise AssertionError(f"tcpdump did not start: {self._stderr.read_text()}")
            time.sleep(0.05)
        return self

    def _stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)

    def __exit__(self, *exc_info: object) -> None:
        time.sleep(0.3)  # packets in flight when the peer stopped
        self._stop()


# ---------------------------------------------------------------- WAV files


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path


def read_wav(path: Path) -> tuple[bytes, int]:
    """(16-bit mono PCM, rate) of a WAV file; other layouts are an assertion failure."""
    with wave.open(str(path), "rb") as source:
        channels, width, rate = source.getnchannels(), source.getsampwidth(), source.getframerate()
        assert (channels, width) == (1, 2), f"{path}: {channels} channels, {width * 8}-bit"
        return source.readframes(source.getnframes()), rate


def run_sox(*args: str) -> None:
    binary = require_binary("sox")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=30)


# ---------------------------------------------------------------- the CLI softphone


def callstream_cli(
    *args: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m callstream <args>`` to completion (dial / answer --once)."""
    return subprocess.run(
        [sys.executable, "-m", "callstream", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@contextlib.contextmanager
def cleanup(*processes: LoggedProcess | Sipp) -> Iterator[None]:
    """Kill whatever is still running when the block exits."""
    try:
        yield
    finally:
        for process in processes:
            process.kill()
