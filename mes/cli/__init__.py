"""Run the `mes` command: parse the command line and hand it to the chosen sub-command.

Each sub-command lives in its own module and registers its parser. A parser's `run` default
takes the parsed arguments and a Context; a parser's `forward` default (`mes engine`,
`mes bench`) takes instead every argument after the command's name, `-h` included.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping, TextIO

from mes.cli import batch, forward, jobs, keys, models, status, submit, up
from mes.cli.common import Context


def build_parser() -> argparse.ArgumentParser:
    """Assemble the `mes` parser from the sub-command modules."""
    parser = argparse.ArgumentParser(prog="mes", description="Model Execution Service")
    commands = parser.add_subparsers(dest="command", required=True)
    up.add_parser(commands)
    forward.add_parsers(commands)
    keys.add_parser(commands)
    submit.add_parser(commands)
    jobs.add_parser(commands)
    models.add_parser(commands)
    status.add_parser(commands)
    batch.add_parser(commands)
    return parser


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, redis=None) -> int:
    """Parse the command line and run the chosen command; `redis` serves `mes keys` in tests."""
    parser = build_parser()
    # Known args only: the arguments of a forwarding command belong to its own parser.
    args, rest = parser.parse_known_args(argv)
    if hasattr(args, "forward"):
        return args.forward(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")  # as parse_args words it
    context = Context(environ=os.environ if environ is None else environ,
                      stdout=stdout or sys.stdout, stderr=stderr or sys.stderr, redis=redis)
    return args.run(args, context)


if __name__ == "__main__":
    sys.exit(main())
