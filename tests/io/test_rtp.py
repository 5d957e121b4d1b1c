"""RTP sockets over real loopback UDP: the port pool, receiving and sending."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from callstream.errors import TransportError
from callstream.io.rtp import Address, RtpPortPool, bind_udp

HOST = "127.0.0.1"


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def on_both_loops(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[LoopFactory], None]:
    """Run the async ``test`` on asyncio's loop and on uvloop (which the gateway runs on)."""

    @pytest.mark.parametrize(
        "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
    )
    def run(loop_factory: LoopFactory) -> None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(test())

    run.__name__ = run.__qualname__ = test.__name__
    return run


def _free_port_pair() -> int:
    """An even port whose odd neighbour is free too (best effort: 20 tries)."""
    for _ in range(20):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((HOST, 0))
        port = probe.getsockname()[1] & ~1
        probe.close()
        pair = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            pair[0].bind((HOST, port))
            pair[1].bind((HOST, port + 1))
        except OSError:
            continue
        finally:
            for sock in pair:
                sock.close()
        if port >= 1024:
            return port
    raise RuntimeError("no free port pair")


def _peer() -> socket.socket:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    peer.settimeout(2)
    return peer


async def _until(condition: object, what: str) -> None:
    for _ in range(200):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@on_both_loops
async def test_every_datagram_of_a_burst_reaches_the_receiver_in_order() -> None:
    first = _free_port_pair()
    pool = RtpPortPool(HOST, first, first + 10)
    rtp = await pool.allocate()
    got: list[tuple[bytes, Address]] = []
    rtp.set_receiver(lambda data, addr: got.append((data, addr)))
    peer = _peer()
    for index in range(20):  # queued at once: one read per readiness event must get all
        peer.sendto(bytes((index,)) * 172, (HOST, rtp.port))
    await _until(lambda: len(got) == 20, "20 datagrams")
    assert [data[0] for data, _ in got] == list(range(20))
    assert {addr for _, addr in got} == {peer.getsockname()}
    rtp.close()
    peer.close()


@on_both_loops
async def test_sendto_reaches_the_peer_and_rtcp_is_swallowed() -> None:
    first = _free_port_pair()
    pool = RtpPortPool(HOST, first, first + 10)
    rtp = await pool.allocate()
    got: list[bytes] = []
    rtp.set_receiver(lambda data, addr: got.append(data))
    peer = _peer()
    rtp.sendto(b"\x80" + bytes(171), peer.getsockname())
    data, addr = peer.recvfrom(2048)
    assert (data, addr) == (b"\x80" + bytes(171), (HOST, rtp.port))
    peer.sendto(b"rtcp", (HOST, rtp.port + 1))  # the odd port: read and ignored
    peer.sendto(b"rtp", (HOST, rtp.port))
    await _until(lambda: got == [b"rtp"], "the RTP datagram")
    rtp.close()
    peer.close()


@on_both_loops
async def test_a_send_the_kernel_refuses_is_counted_not_raised() -> None:
    loop = asyncio.get_running_loop()
    endpoint = bind_udp(loop, HOST, 0)
    endpoint.sendto(bytes(70000), (HOST, 9))  # larger than any UDP datagram: EMSGSIZE
    assert endpoint.send_errors == 1
    endpoint.close()


@on_both_loops
async def test_close_stops_reading_and_frees_the_port_for_the_next_call() -> None:
    first = _free_port_pair()
    pool = RtpPortPool(HOST, first, first + 2)  # exactly one pair
    rtp = await pool.allocate()
    got: list[bytes] = []
    rtp.set_receiver(lambda data, addr: got.append(data))
    with pytest.raises(TransportError, match="no free RTP port pair"):
        await pool.allocate()
    rtp.close()
    rtp.sendto(b"after close", (HOST, 9))  # a late tick after hangup: ignored
    assert pool.in_use == 0
    again = await pool.allocate()
    assert again.port == rtp.port
    again.close()
    assert got == []


@on_both_loops
async def test_a_port_taken_by_another_program_is_skipped() -> None:
    first = _free_port_pair()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, first + 1))  # the RTCP port of the first pair
    pool = RtpPortPool(HOST, first, first + 10)
    try:
        rtp = await pool.allocate()
        assert rtp.port == first + 2
        rtp.close()
    finally:
        squatter.close()


@on_both_loops
async def test_a_host_name_is_resolved_for_binding() -> None:
    endpoint = bind_udp(asyncio.get_running_loop(), "localhost", 0)
    assert endpoint.port > 0
    endpoint.close()
