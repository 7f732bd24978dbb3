"""Run `mes engine` and `mes bench`: hand the rest of the command line to their own parsers."""

from __future__ import annotations


def add_parsers(commands) -> None:
    """Register `mes engine` and `mes bench`; without help of their own, `-h` reaches theirs."""
    commands.add_parser("engine", add_help=False,
                        help="run the Ollama-protocol engine (see `mes engine -h`)"
                        ).set_defaults(forward=run_engine)
    commands.add_parser("bench", add_help=False,
                        help="measure MES on a private stack (see `mes bench -h`)"
                        ).set_defaults(forward=run_bench)


def run_engine(argv: list[str]) -> int:
    """Run the engine's own command line; the engine shares no code with the rest of MES."""
    from mes.engine.cli import main
    return main(argv)


def run_bench(argv: list[str]) -> int:
    """Run the bench's own command line."""
    # Imported only here: mes/cli loads the bench, and its dependencies, for `mes bench` alone.
    from mes.bench.cli import main
    return main(argv)
