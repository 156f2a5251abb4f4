"""The ``relay`` command: parse arguments → Settings → logging → run. Nothing else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Settings, parse_headers, split_list
from .errors import RelayError
from .upstream import LOCAL_MODES


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``serve``, ``upstream`` and ``call``."""
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the relay (demo page at /)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--upstream-url", help="Realtime WebSocket URL (default: embedded "
                       "server, or OpenAI's when OPENAI_API_KEY is set)")
    serve.add_argument("--model", help="model for the upstream session")
    serve.add_argument("--upstream-header", action="append", default=[], metavar="'NAME: VALUE'",
                       help="extra upstream header, e.g. 'api-key: ...' (repeatable)")
    serve.add_argument("--ice-server", action="append", default=[], metavar="URL",
                       help="stun:/turn: URL for the relay's peers (repeatable; default none)")
    serve.add_argument("--ice-address", action="append", default=[], metavar="IP",
                       help="host address to advertise in ICE (repeatable; default all)")
    serve.add_argument("--uplink-chunk-ms", type=int, help="audio per input_audio_buffer.append")
    serve.add_argument("--max-calls", type=int, help="concurrent call limit")
    serve.add_argument("--opus-bitrate", type=int, help="bit rate of the Opus sent to peers")
    serve.add_argument("--opus-complexity", type=int,
                       help="libopus complexity 0-10 (default 10; lower: less CPU, worse sound)")
    serve.add_argument("--opus-application", choices=["voip", "audio", "lowdelay"],
                       help="Opus mode sent to peers (default lowdelay: CELT only)")
    serve.add_argument("--local-mode", choices=LOCAL_MODES,
                       help="what the embedded upstream answers with")
    serve.add_argument("--session", help="default session (GA JSON) merged under each call's")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    serve.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"],
                       help="event loop to run on (default auto: uvloop if installed)")

    upstream = sub.add_parser("upstream", help="run only the embedded local Realtime server")
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, default=8765)
    upstream.add_argument("--mode", choices=LOCAL_MODES, default=LOCAL_MODES[0])

    call = sub.add_parser("call", help="call a relay headlessly with a WAV file")
    call.add_argument("--input", required=True, type=Path, help="16-bit WAV to speak")
    call.add_argument("--output", required=True, type=Path, help="where to write the reply")
    call.add_argument("--url", default="http://127.0.0.1:8080", help="the relay's base URL")
    call.add_argument("--api-key", help="bearer key for the relay, if it needs one")
    call.add_argument("--ice-address", action="append", default=[], metavar="IP",
                      help="host address to offer in ICE (repeatable; default all)")
    call.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``relay`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = _serve_settings(args)
            _setup_logging(settings.log_level)
            from .server.run import run

            run(settings)
        elif args.command == "upstream":
            _setup_logging("INFO")
            from .upstream.run import run_local

            asyncio.run(run_local(args.host, args.port, args.mode))
        else:
            _setup_logging("WARNING")
            from .client.cli import run_call

            return asyncio.run(run_call(args.url, args.input, args.output, api_key=args.api_key,
                                        ice_addresses=args.ice_address, timeout=args.timeout))
    except RelayError as exc:
        print(f"relay: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _serve_settings(args: argparse.Namespace) -> Settings:
    session = None
    if args.session:
        from .config import parse_session_json

        session = parse_session_json(args.session, "--session")
    return Settings.from_env(
        host=args.host, port=args.port, upstream_url=args.upstream_url, model=args.model,
        upstream_headers=parse_headers(args.upstream_header) or None,
        ice_servers=tuple(args.ice_server) or None,
        ice_addresses=tuple(a for v in args.ice_address for a in split_list(v)) or None,
        uplink_chunk_ms=args.uplink_chunk_ms, max_calls=args.max_calls,
        opus_bitrate=args.opus_bitrate, opus_complexity=args.opus_complexity,
        opus_application=args.opus_application,
        local_mode=args.local_mode, default_session=session, log_level=args.log_level,
        event_loop=args.event_loop,
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiortc and aioice are chatty at INFO about every candidate pair.
    for noisy in ("aioice", "aiortc", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))



if __name__ == "__main__":
    sys.exit(main())
