"""The ``relay`` command: parse arguments → Settings → logging → run. Nothing else."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Settings, settings_listing, settings_markdown
from .errors import RelayError
from .logs import configure_logging
from .upstream import DEFAULT_LOCAL_MODE, LOCAL_MODES


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``serve``, ``settings``, ``upstream`` and ``call``."""
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the relay (demo page at /)")
    Settings.add_flags(serve)

    listing = sub.add_parser("settings", help="print the settings relay serve would use "
                             "from this environment (secrets masked)")
    listing.add_argument("--markdown", action="store_true",
                         help="print the README's table of every setting instead")

    upstream = sub.add_parser("upstream", help="run only the embedded local Realtime server")
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, default=8765)
    upstream.add_argument("--mode", choices=LOCAL_MODES, default=DEFAULT_LOCAL_MODE)
    upstream.add_argument("--mcp-urls", default="", metavar="URL,...",
                          help="URL prefixes of the MCP servers sessions may name (`*`: any)")

    call = sub.add_parser("call", help="call a relay headlessly: speak a WAV file, type a "
                          "message, or both, and wait for the reply")
    call.add_argument("--input", type=Path, help="16-bit WAV to speak")
    call.add_argument("--say", metavar="TEXT", help="a message to type once the call is up "
                      "(sent as the user's input_text, then response.create)")
    call.add_argument("--output", type=Path, help="where to write the reply's audio (WAV)")
    call.add_argument("--url", default="http://127.0.0.1:8080", help="the relay's base URL")
    call.add_argument("--api-key", help="bearer key for the relay, if it needs one")
    call.add_argument("--ice-address", action="append", default=[], metavar="IP",
                      help="host address to offer in ICE (repeatable; default all)")
    call.add_argument("--ice-server", action="append", default=[], metavar="URL",
                      help="a stun: or turn:USER:PASS@HOST:PORT[?transport=tcp] URL for the "
                           "client (once per kind)")
    call.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``relay`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "call" and args.input is None and args.say is None:
        parser.error("relay call needs --input, --say or both")
    try:
        if args.command == "serve":
            settings = Settings.from_args(args)
            configure_logging(settings.log_level, settings.log_format,
                              secrets=settings.secret_strings(), worker=settings.worker_index)
            if settings.workers > 1 and settings.worker_index is None:
                from .cluster.supervisor import supervise

                return supervise(settings, list(sys.argv[1:] if argv is None else argv))
            from .server.serve import run

            run(settings)
        elif args.command == "settings":
            print(settings_markdown() if args.markdown else settings_listing(Settings.from_env()),
                  end="")
        elif args.command == "upstream":
            configure_logging("INFO")
            from .upstream.standalone import run_local

            mcp_urls = tuple(url.strip() for url in args.mcp_urls.split(",") if url.strip())
            asyncio.run(run_local(args.host, args.port, args.mode, mcp_urls))
        else:
            configure_logging("WARNING")
            from .client.cli import run_call

            return asyncio.run(run_call(args.url, args.input, args.output, say=args.say,
                                        api_key=args.api_key, ice_addresses=args.ice_address,
                                        ice_servers=args.ice_server, timeout=args.timeout))
    except RelayError as exc:
        print(f"relay: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
