"""The ``callstream`` command: ``serve`` the gateway, ``dial`` or ``answer`` as a softphone,
manage API ``token``s."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from callstream import __version__
from callstream.errors import CallstreamError, ConfigError


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop where it is installed (it is a dependency on Linux and macOS)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _setup_logging(level: str, fmt: str) -> None:
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise ConfigError(f"log_level: unknown level {level!r}")
    logging.basicConfig(level=numeric, format=fmt, stream=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    from callstream.app import serve
    from callstream.config import load_settings

    overrides = {
        "host": args.host,
        "public_host": args.public_host,
        "sip_port": args.sip_port,
        "http_port": args.http_port,
        "rtp_ports": args.rtp_ports,
        "database_url": args.database_url,
        "rtp_timeout": args.rtp_timeout,
        "log_level": args.log_level,
        "max_streams_per_call": args.max_streams_per_call,
        "stream_buffer_seconds": args.stream_buffer_seconds,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_ca": args.tls_ca,
    }
    settings = load_settings(args.config, overrides)
    _setup_logging(settings.log_level, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    _run(serve(settings))
    return 0


def _softphone_common(args: argparse.Namespace) -> Any:
    from callstream.config import parse_port_range
    from callstream.softphone import SessionOptions

    _setup_logging(args.log_level, "%(message)s")
    options = SessionOptions(
        play=Path(args.play) if args.play else None,
        record=Path(args.record) if args.record else None,
        duration_s=args.duration,
        dtmf=args.dtmf,
    )
    return options, parse_port_range(args.rtp_ports)


def _dial(args: argparse.Namespace) -> int:
    from callstream.sip.auth import DigestCredentials
    from callstream.softphone import dial

    options, rtp_ports = _softphone_common(args)
    credentials = None
    if args.auth_user is not None:
        credentials = DigestCredentials(args.auth_user, args.auth_password or "")
    target = args.target if ":" in args.target else f"sip:{args.target}"
    code: int = _run(
        dial(
            target,
            options,
            from_uri=args.from_uri,
            host=args.local_host,
            port=args.local_port,
            rtp_ports=rtp_ports,
            credentials=credentials,
            transport=args.transport.upper(),
            answer_timeout_s=args.answer_timeout,
        )
    )
    return code


def _answer(args: argparse.Namespace) -> int:
    from callstream.softphone import answer

    options, rtp_ports = _softphone_common(args)
    host, _, port = args.listen.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise ConfigError(f"--listen: expected HOST:PORT, got {args.listen!r}")
    code: int = _run(
        answer(options, host=host, port=int(port), rtp_ports=rtp_ports, once=args.once)
    )
    return code


def _token_database_url(args: argparse.Namespace) -> str:
    from callstream.config import load_settings

    return load_settings(args.config, {"database_url": args.database_url}).database_url


async def _token_create(database_url: str, account_name: str) -> str:
    from callstream.store import open_store

    store = await open_store(database_url)
    try:
        _, token = await store.create_token(account_name)
    finally:
        await store.close()
    return token


async def _token_revoke(database_url: str, token: str) -> bool:
    from callstream.store import open_store

    store = await open_store(database_url)
    try:
        return await store.revoke_token(token)
    finally:
        await store.close()


def _token(args: argparse.Namespace) -> int:
    database_url = _token_database_url(args)
    if args.token_command == "create":
        if not args.account.strip():
            raise ConfigError("--account: must not be empty")
        token: str = _run(_token_create(database_url, args.account))
        print(token)  # alone on stdout, for scripts; never logged
        return 0
    revoked: bool = _run(_token_revoke(database_url, args.token))
    if not revoked:
        print("callstream: no such token (or already revoked)", file=sys.stderr)
        return 1
    return 0


def _add_token_parser(commands: Any) -> None:
    token = commands.add_parser("token", help="create or revoke API tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="print a new token for an account (made if new)")
    create.add_argument("--account", required=True, metavar="NAME", help="account name")
    revoke = actions.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token", metavar="TOKEN")
    for parser in (create, revoke):
        parser.add_argument("--config", metavar="FILE", help="TOML settings file")
        parser.add_argument("--database-url", help="database URL (default: the settings')")
    token.set_defaults(handler=_token)


def _add_session_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--play", metavar="IN.wav", help="WAV file to play into the call")
    parser.add_argument("--record", metavar="OUT.wav", help="record what is heard to this WAV")
    parser.add_argument("--duration", type=float, metavar="S", help="hang up after S seconds")
    parser.add_argument(
        "--dtmf", metavar="DIGITS", help="send these digits (RFC 4733) after answer"
    )
    parser.add_argument("--rtp-ports", default="40000-40999", help="local RTP port range")
    parser.add_argument("--log-level", default="info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callstream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"callstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--public-host", help="address peers reach us at, for Via/Contact/SDP (default: --host)"
    )
    serve.add_argument("--sip-port", type=int, help="SIP port, UDP and TCP (default 5060)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--rtp-ports", help="RTP port range FIRST-LAST (default 20000-29999)")
    serve.add_argument("--database-url", help="database URL (default: SQLite file callstream.db)")
    serve.add_argument("--rtp-timeout", type=float, help="end a call after S s without RTP (60)")
    serve.add_argument("--log-level", help="debug, info, warning (default info)")
    serve.add_argument("--max-streams-per-call", type=int, help="media streams per call (5)")
    serve.add_argument(
        "--stream-buffer-seconds", type=float, help="audio a stream may send ahead (120)"
    )
    serve.add_argument("--tls-cert", help="PEM certificate: serve https/wss (with --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument("--tls-ca", help="extra CA file for outgoing wss:// (external media)")
    serve.set_defaults(handler=_serve)

    dial = commands.add_parser("dial", help="place a call: play a WAV, record what is heard")
    dial.add_argument("target", help="SIP URI to call, e.g. sip:echo@127.0.0.1:5060")
    dial.add_argument("--from", dest="from_uri", metavar="URI", help="our From URI")
    dial.add_argument("--auth-user", help="digest username for a trunk that challenges")
    dial.add_argument("--auth-password", help="digest password")
    dial.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    dial.add_argument("--local-host", default="127.0.0.1")
    dial.add_argument("--local-port", type=int, default=0)
    dial.add_argument("--answer-timeout", type=float, default=30.0, metavar="S")
    _add_session_flags(dial)
    dial.set_defaults(handler=_dial)

    answer = commands.add_parser("answer", help="answer calls: play a WAV, record what is heard")
    answer.add_argument("--listen", default="127.0.0.1:5070", metavar="HOST:PORT")
    answer.add_argument("--once", action="store_true", help="exit after the first call")
    _add_session_flags(answer)
    answer.set_defaults(handler=_answer)

    _add_token_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CallstreamError as exc:
        print(f"callstream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
