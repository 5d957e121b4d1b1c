"""The gateway: wires settings, the call engine, routes and the HTTP listener; starts and
stops them cleanly (SIGINT/SIGTERM: every live call gets its BYE first).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from aiohttp import web

from callstream import __version__
from callstream.api import ApiAccessLogger, create_api
from callstream.calls.engine import Engine, EngineSettings, IncomingCallRouter
from callstream.calls.service import CallService
from callstream.config import Settings
from callstream.errors import ConfigError
from callstream.media.clock import (
    FullCollectionPauses,
    freeze_startup_heap,
    space_out_full_collections,
)
from callstream.store import open_store
from callstream.store.base import Store
from callstream.store.writer import RecordWriter

logger = logging.getLogger("callstream")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        first, last = settings.rtp_range
        self.engine = Engine(
            EngineSettings(
                host=settings.host,
                public_host=settings.public_host,
                sip_port=settings.sip_port,
                rtp_first=first,
                rtp_last=last,
                rtp_timeout=settings.rtp_timeout,
                max_calls=settings.max_calls,
                user_agent=f"callstream/{__version__}",
            ),
            IncomingCallRouter(),  # replaced by the call service in start()
        )
        self.store: Store | None = None
        self.writer: RecordWriter | None = None
        self.service: CallService | None = None
        self._http_runner: web.AppRunner | None = None
        self.full_collections = FullCollectionPauses()

    async def start(self, *, freeze_heap: bool = False) -> None:
        """Open the store, start SIP, RTP and the media clock, then HTTP.

        ``freeze_heap`` (``serve``, one gateway per process) keeps the startup objects
        out of later garbage collections and runs full ones far less often; see
        ``freeze_startup_heap`` and ``space_out_full_collections``.
        """
        self.store = await open_store(self.settings.database_url)
        self.writer = RecordWriter(self.store)
        self.service = CallService(self.engine, self.store, self.writer, self.settings)
        await self.service.start()
        self.engine.router = self.service
        if freeze_heap:  # before the media clock starts: the collection takes a while
            freeze_startup_heap()
            space_out_full_collections()
        self.full_collections.install()
        await self.engine.start()
        self.service.sync_registrations()  # trunks with register = true
        app = create_api(self.service, self.store)
        app.router.add_get("/healthz", self._healthz)
        self._http_runner = web.AppRunner(app, access_log_class=ApiAccessLogger)
        await self._http_runner.setup()
        site = web.TCPSite(
            self._http_runner,
            self.settings.host,
            self.settings.http_port,
            ssl_context=self._server_tls(),
        )
        await site.start()
        logger.info(
            "callstream %s listening: sip=%s:%d (udp+tcp) http=%s:%d rtp=%s",
            __version__,
            self.settings.host,
            self.engine.transport.local_port,
            self.settings.host,
            self.settings.http_port,
            self.settings.rtp_ports,
        )

    def _server_tls(self) -> ssl.SSLContext | None:
        """https/wss on the HTTP port when ``tls_cert`` and ``tls_key`` are set."""
        cert, key = self.settings.tls_cert, self.settings.tls_key
        if not cert and not key:
            return None
        if not (cert and key):
            raise ConfigError("tls_cert and tls_key go together: give both or neither")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls_cert/tls_key: cannot load {cert} / {key}: {exc}") from exc
        return context

    async def stop(self) -> None:
        logger.info("stopping: hanging up %d call(s)", len(self.engine.calls))
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        await self.engine.stop()
        if self.service is not None:
            await self.service.close()
        if self.writer is not None:
            await self.writer.close()  # every record written before we exit
        if self.store is not None:
            await self.store.close()
        self.full_collections.uninstall()
        logger.info("stopped")

    async def _healthz(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"status": "ok", "calls": len(self.engine.calls)}
        body["rtp_ports_in_use"] = self.engine.ports.in_use
        clock = self.engine.clock
        if clock is not None:
            # How late the shared 20 ms tick has run: a stall is a gap in every call's audio.
            body["media_clock_max_lag_ms"] = round(clock.max_lag * 1000, 1)
            body["media_clock_stalls"] = clock.stalls
            body["media_clock_ticks_skipped"] = clock.ticks_skipped
            # Legs moved to their real-time stream client's phase (media/clock.py).
            body["media_clock_phase_moves"] = clock.moves
            # Slots run before their deadline: conferences whose every frame was in.
            body["media_clock_early_runs"] = clock.early_runs
        # Full garbage collections stop the loop, so every call's audio, for their pause.
        pauses = self.full_collections
        body["gc_full_collections"] = pauses.count
        body["gc_full_max_pause_ms"] = round(pauses.max_pause_s * 1000, 1)
        body["gc_full_last_pause_ms"] = round(pauses.last_pause_s * 1000, 1)
        if self.service is not None:
            # A participant heard a period late, put back in time (media/conference.py).
            body["conference_frames_trimmed"] = self.service.conference_frames_trimmed()
        if self.engine.registrations:
            body["registrations"] = [
                {"trunk": r.spec.name, "aor": r.spec.aor, "state": r.state,
                 "expires": r.expires, "error": r.last_error}
                for r in self.engine.registrations.values()
            ]  # fmt: skip
        return web.json_response(body)


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    gateway = Gateway(settings)
    await gateway.start(freeze_heap=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
