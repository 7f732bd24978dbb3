"""Run `mes status`: show queues, workers and counters (admin)."""

from __future__ import annotations

import argparse
from functools import partial

from mes.cli.common import EXIT_OK, Context, api_options, print_json, run_api
from mes.cli.tables import json_option, show, status_view, wants_table


def add_parser(commands) -> None:
    """Register `mes status` on `commands`."""
    status = commands.add_parser("status", parents=[api_options(), json_option()],
                                 help="show queues, workers and counters (admin)")
    status.set_defaults(run=partial(run_api, show_status))


def show_status(args: argparse.Namespace, client, context: Context) -> int:
    """Print the service's status: a summary at a terminal, else its JSON."""
    status = client.status()
    if wants_table(args, context.stdout):
        show(status_view(status), context.stdout)
    else:
        print_json(status, context.stdout)
    return EXIT_OK
