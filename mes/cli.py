"""Run the `mes` command: `mes up` and `mes engine`."""

from __future__ import annotations

import argparse
import os
import sys

from mes.errors import ConfigError


def _up(args: argparse.Namespace) -> int:
    from mes.launcher import StackOptions, run_stack
    options = StackOptions(host=args.host, port=args.port, simulated=args.simulated,
                           web_workers=args.web_workers, engine_port=args.engine_port,
                           flower_port=args.flower_port)
    return run_stack(options, dict(os.environ))


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "engine":
        # The engine shares no code with the rest of MES, its CLI included.
        from mes.engine.cli import main as engine_main
        return engine_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mes", description="Model Execution Service")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the whole service locally (Ctrl-C stops it)")
    up.add_argument("--simulated", action="store_true",
                    help="use the simulated engine instead of a real model")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8001)
    up.add_argument("--web-workers", type=int, default=2)
    up.add_argument("--engine-port", type=int, default=11434)
    up.add_argument("--flower-port", type=int, default=5555)
    up.set_defaults(func=_up)
    commands.add_parser("engine", help="run the Ollama-protocol engine (see `mes engine -h`)")
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mes: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
