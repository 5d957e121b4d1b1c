"""Fixtures for the interop suite: ports, the gateway, SIPp, tcpdump, baresip.

Every process started here is stopped at teardown; the gateway must exit 0 on
SIGTERM, and its log is printed (shown by pytest when the test fails).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.interop.harness import (
    HOST,
    Capture,
    Gateway,
    LoggedProcess,
    PortAllocator,
    Sipp,
    SippResult,
    require_binary,
    wait_port_taken,
)

GatewayFactory = Callable[..., Gateway]


INTEROP_RERUNS = 1
"""Interop tests run real peers in real time on a shared 2-core machine: a scheduling
stall can cost a few frames of audio. Such a test is run once more before it fails
(pytest-rerunfailures, shown as R in the output); a real fault fails both runs."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)
            item.add_marker(pytest.mark.flaky(reruns=INTEROP_RERUNS, reruns_delay=1))


@pytest.fixture(scope="session")
def ports() -> PortAllocator:
    return PortAllocator()


@pytest.fixture
def gateway_factory(tmp_path: Path, ports: PortAllocator) -> Iterator[GatewayFactory]:
    """``gateway_factory(config_toml=None, **flags)`` -> a ready Gateway.

    Flags are the CLI's, with underscores (``rtp_timeout=2``, ``rtp_ports="20000-20001"``);
    the SIP, HTTP and RTP ports default to free ones.
    """
    started: list[Gateway] = []

    def start(config_toml: str | None = None, **flags: Any) -> Gateway:
        workdir = tmp_path / f"gateway{len(started)}"
        workdir.mkdir()
        gateway = Gateway(workdir, ports, config_toml, dict(flags))
        started.append(gateway)
        gateway.wait_ready()
        return gateway

    yield start
    failures = []
    for gateway in started:
        code = gateway.stop()
        print(f"===== gateway log ({gateway.log_path}), exit {code} =====\n{gateway.log()}")
        if gateway.crashed:
            continue  # killed on purpose by the test
        if gateway.died_before_stop:
            # a gateway that never became ready has already failed its test
            if gateway.ready:
                failures.append(f"gateway died during the test (exit {code})")
        elif code != 0:
            failures.append(f"gateway exited {code} on SIGTERM (expected 0)")
    assert not failures, "; ".join(failures)


class SippRunner:
    """``sipp(scenario, target, *args, timeout=30)`` runs SIPp to the end (``-m 1``).

    ``sipp.start(...)`` returns the running Sipp instead; ``wait()`` gives the result.
    """

    def __init__(self, tmp_path: Path, ports: PortAllocator) -> None:
        self._tmp_path = tmp_path
        self._ports = ports
        self._running: list[Sipp] = []

    def start(
        self,
        scenario: str,
        target: str | None,
        *args: str,
        timeout: float = 30.0,
        port: int | None = None,
        media_port: int | None = None,
        listen: bool = False,
        files: Sequence[Path] = (),
    ) -> Sipp:
        """Start SIPp; with ``listen`` (a UAS) wait until its SIP port is bound.

        ``files`` are copied into SIPp's working directory first: a scenario's
        ``rtp_stream`` file (e.g. tone.ul) is read when SIPp loads the scenario.
        """
        port = port or self._ports.port()
        # SIPp also binds media_port + 2 (video echo)
        media_port = media_port or self._ports.rtp_block(4)
        workdir = self._tmp_path / f"sipp{len(self._running)}"
        workdir.mkdir(parents=True)
        for file in files:
            shutil.copy(file, workdir / file.name)
        sipp = Sipp.start(
            scenario,
            target,
            *args,
            workdir=workdir,
            port=port,
            media_port=media_port,
            timeout=timeout,
        )
        self._running.append(sipp)
        if listen:
            wait_port_taken(port, 10)
        return sipp

    def __call__(
        self, scenario: str, target: str | None, *args: str, timeout: float = 30.0, **kw: Any
    ) -> SippResult:
        sipp = self.start(scenario, target, *args, timeout=timeout, **kw)
        return sipp.wait(timeout + 15)

    def stop_all(self) -> None:
        for sipp in self._running:
            sipp.kill()


@pytest.fixture
def sipp(tmp_path: Path, ports: PortAllocator) -> Iterator[SippRunner]:
    runner = SippRunner(tmp_path, ports)
    yield runner
    runner.stop_all()


@pytest.fixture
def capture(tmp_path: Path) -> Callable[[int], Capture]:
    """``with capture(port) as cap:`` records UDP to/from ``port`` into ``cap.path``."""
    count = 0

    def make(port: int) -> Capture:
        nonlocal count
        count += 1
        return Capture(tmp_path / f"capture{count}.pcap", port)

    return make


class Baresip(LoggedProcess):
    """baresip auto-answering as ``sip:bob@127.0.0.1:<port>``.

    It sends ``source_wav`` (16-bit mono WAV) and the sndfile module records the
    decoded audio it receives into ``recordings`` as ``dump-<time>-dec.wav``.
    baresip 1.0's aufile module is a source only, and no player is configured:
    sndfile sits in the receive pipeline before the player and records anyway.
    """

    def __init__(self, workdir: Path, port: int, rtp_first: int, source_wav: Path) -> None:
        self.port = port
        self.recordings = workdir / "recordings"
        self.recordings.mkdir(parents=True)
        config_dir = workdir / "config"
        config_dir.mkdir()
        (config_dir / "config").write_text(
            "poll_method epoll\n"
            f"sip_listen {HOST}:{port}\n"
            f"audio_source aufile,{source_wav}\n"
            f"audio_alert aufile,{source_wav}\n"
            f"rtp_ports {rtp_first}-{rtp_first + 9}\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\nmodule aufile.so\nmodule sndfile.so\n"
            "module_app account.so\n"
            f"snd_path {self.recordings}\n"
        )
        (config_dir / "accounts").write_text(f"<sip:bob@{HOST}>;regint=0;answermode=auto\n")
        binary = require_binary("baresip")
        super().__init__([binary, "-f", str(config_dir)], workdir / "baresip.log", cwd=workdir)
        self.wait_for_log("baresip is ready", 10)

    def received(self) -> list[Path]:
        """The recordings of what baresip heard, oldest first."""
        return sorted(self.recordings.glob("*-dec.wav"))

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.wait(5)
        except Exception:
            self.kill()


@pytest.fixture
def baresip_factory(tmp_path: Path, ports: PortAllocator) -> Iterator[Callable[[Path], Baresip]]:
    started: list[Baresip] = []

    def start(source_wav: Path) -> Baresip:
        workdir = tmp_path / f"baresip{len(started)}"
        phone = Baresip(workdir, ports.port(), ports.rtp_block(10), source_wav)
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()
        print(f"===== baresip log =====\n{phone.log()[-5000:]}")
