"""SIGTERM hangs up live calls with BYE and exits 0."""

from __future__ import annotations

from tests.interop.conftest import GatewayFactory, SippRunner


def test_sigterm_sends_bye_to_live_call_and_exits_zero(
    gateway_factory: GatewayFactory, sipp: SippRunner
) -> None:
    gateway = gateway_factory()
    caller = sipp.start("uac_wait_bye", gateway.uri_host, "-s", "echo", timeout=40)
    gateway.wait_for_log(r"call \S+ answered", 10)
    assert gateway.live_calls() == 1
    assert gateway.stop() == 0
    result = caller.wait(20)
    assert result.returncode == 0, result.explain()  # the scenario's <recv request="BYE">
    assert "BYE sip:" in result.messages
    assert "reason=shutdown" in gateway.log()
