"""HTTP callbacks beside the media path: Plivo stream status callbacks and answer URLs.

``WebhookSender`` delivers fire-and-forget requests (a stream's ``StartStream``,
``StopStream``, ``DroppedStream`` and ``Played`` events) from one worker task through
a bounded queue, so a slow or dead callback server never delays a call's audio: a
full queue, a timeout, a refused connection or an HTTP error is logged and recorded
in ``failures`` (and passed to ``on_failure``), never raised into the caller.
Connection errors, timeouts and 5xx answers are retried with exponential backoff;
other 4xx answers are final.

``fetch_answer_xml`` is the opposite kind: the call waits for its answer URL's
``<Response>``, so its failures raise ConfigError naming the URL and the reason, and
the caller records it on the call and hangs up (as Plivo does).

Parameter names are Plivo's: "Audio Stream XML element > Parameters sent to the
statusCallbackUrl" and "answer_url request parameters".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from callstream.errors import ConfigError

logger = logging.getLogger(__name__)

METHODS = ("GET", "POST")
STREAM_EVENTS = ("StartStream", "StopStream", "DroppedStream", "Played")
ERROR_NOT_CONNECTED = "Could not establish connection with the remote service"
ERROR_DISCONNECTED = "Connection disconnected with the remote service"
"""The two ``Error`` texts Plivo sends with ``DroppedStream``."""

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_QUEUED = 1000
DEFAULT_FAILURES_KEPT = 100
ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class WebhookFailure:
    """A callback that was not delivered: where, what, why, after how many attempts."""

    url: str
    method: str
    params: Mapping[str, str]
    error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class _Request:
    url: str
    method: str
    params: Mapping[str, str]


class _Retry(Exception):
    """One attempt failed in a way worth trying again (connection, timeout, 5xx)."""


class _Final(Exception):
    """One attempt failed in a way that retrying cannot fix (4xx)."""


class WebhookSender:
    """Queued HTTP callbacks with one worker task; ``send`` never blocks nor raises.

    ``session`` may be shared (it is then not closed here); otherwise one is created on
    first use and closed by ``close()``.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_queued: int = DEFAULT_MAX_QUEUED,
        failures_kept: int = DEFAULT_FAILURES_KEPT,
        on_failure: Callable[[WebhookFailure], None] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.on_failure = on_failure
        self.failures: deque[WebhookFailure] = deque(maxlen=failures_kept)
        """The most recent failures, oldest first."""
        self.delivered = 0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=max_queued)
        self._session = session
        self._own_session = session is None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    def send(self, url: str, method: str, params: Mapping[str, str]) -> None:
        """Queue one request: GET puts ``params`` in the query string, POST in a form body."""
        request = _Request(url, method.upper(), dict(params))
        if self._closed:
            self._fail(request, "the sender is closed", 0)
            return
        if request.method not in METHODS:
            self._fail(request, f"method {method!r} is not GET or POST", 0)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._fail(request, "no running event loop", 0)
            return
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            self._fail(request, f"queue full ({self._queue.maxsize} waiting)", 0)
            return
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name="webhook-sender")

    async def drain(self) -> None:
        """Wait until every queued request has been delivered or has failed."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop the worker (queued requests are dropped) and close our own session."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._own_session and self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            request = await self._queue.get()
            try:
                await self._deliver(request)
            except Exception as error:  # the worker must outlive any one request
                self._fail(request, f"unexpected error: {error!r}", 0)
            finally:
                self._queue.task_done()

    async def _deliver(self, request: _Request) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for attempt in range(1, self.attempts + 1):
            try:
                await self._attempt(self._session, request)
            except _Final as error:
                self._fail(request, str(error), attempt)
                return
            except _Retry as error:
                if attempt == self.attempts:
                    self._fail(request, str(error), attempt)
                    return
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            else:
                self.delivered += 1
                return

    async def _attempt(self, session: aiohttp.ClientSession, request: _Request) -> None:
        as_query = request.method == "GET"
        try:
            async with session.request(
                request.method,
                request.url,
                params=request.params if as_query else None,
                data=None if as_query else request.params,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            raise _Retry(f"timed out after {self.timeout_s:g} s") from None
        except aiohttp.ClientError as error:
            raise _Retry(f"request failed: {error}") from None
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        if status >= 400:
            raise _Final(f"HTTP {status}")

    def _fail(self, request: _Request, error: str, attempts: int) -> None:
        failure = WebhookFailure(request.url, request.method, request.params, error, attempts)
        self.failures.append(failure)
        logger.warning(
            "! webhook %s %s failed after %d attempt(s): %s (call %s)",
            request.method,
            request.url,
            attempts,
            error,
            request.params.get("CallUUID", "-"),
        )
        if self.on_failure is not None:
            try:
                self.on_failure(failure)
            except Exception:  # a recorder's bug must not stop the sender
                logger.exception("webhook failure callback raised")


def format_timestamp(moment: datetime) -> str:
    """Plivo's callback time format: UTC, "YYYY-MM-DD HH:MM:SS" (naive means UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def plivo_callback_params(
    event: str,
    *,
    stream_id: str,
    call_uuid: str,
    from_: str,
    to: str,
    service_url: str,
    extra_headers: str,
    error: str = "",
    timestamp: datetime | str,
) -> dict[str, str]:
    """The parameters of one statusCallbackUrl request (Plivo's names and order).

    ``event`` is StartStream, StopStream, DroppedStream or Played; ``error`` is given
    only with DroppedStream (``ERROR_NOT_CONNECTED`` or ``ERROR_DISCONNECTED``).
    """
    if event not in STREAM_EVENTS:
        raise ConfigError(f"Event: must be one of {', '.join(STREAM_EVENTS)}, not {event!r}")
    return {
        "Event": event,
        "Error": error,
        "CallUUID": call_uuid,
        "From": from_,
        "To": to,
        "ServiceURL": service_url,
        "ExtraHeaders": extra_headers,
        "StreamID": stream_id,
        "Timestamp": timestamp if isinstance(timestamp, str) else format_timestamp(timestamp),
    }


def plivo_answer_params(
    *, call_uuid: str, from_: str, to: str, direction: str, call_status: str = "in-progress"
) -> dict[str, str]:
    """The parameters Plivo sends to an answer_url (direction "inbound" or "outbound")."""
    return {
        "CallUUID": call_uuid,
        "From": from_,
        "To": to,
        "Direction": direction,
        "CallStatus": call_status,
    }


async def fetch_answer_xml(
    url: str,
    method: str,
    params: Mapping[str, str],
    *,
    timeout_s: float = ANSWER_TIMEOUT_S,
    session: aiohttp.ClientSession | None = None,
) -> str:
    """The XML document ``url`` answers with (GET: query string, POST: form body).

    Raises ConfigError naming the URL when it cannot be reached, does not answer in
    ``timeout_s``, answers a non-2xx status, or answers something that is not XML
    (neither an XML content type nor a body starting with "<").
    """
    method = method.upper()
    if method not in METHODS:
        raise ConfigError(f"answer_url method must be GET or POST, not {method!r}")
    own_session = session is None
    client = aiohttp.ClientSession() if session is None else session
    as_query = method == "GET"
    try:
        async with client.request(
            method,
            url,
            params=params if as_query else None,
            data=None if as_query else dict(params),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await response.text(errors="replace")
            status = response.status
            content_type = response.content_type
    except TimeoutError:
        raise ConfigError(f"answer_url {url} did not answer within {timeout_s:g} s") from None
    except aiohttp.ClientError as error:
        raise ConfigError(f"answer_url {url} could not be reached: {error}") from None
    finally:
        if own_session:
            await client.close()
    if not 200 <= status < 300:
        raise ConfigError(f"answer_url {url} answered HTTP {status}")
    if "xml" not in content_type and not body.lstrip().startswith("<"):
        raise ConfigError(f"answer_url {url} answered HTTP {status} with {content_type}, not XML")
    return body
