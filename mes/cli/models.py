"""Run `mes models`: list the models the service offers."""

from __future__ import annotations

import argparse
from functools import partial

from mes.cli.common import EXIT_OK, Context, api_options, print_json, run_api


def add_parser(commands) -> None:
    """Register `mes models` on `commands`."""
    models = commands.add_parser("models", parents=[api_options()], help="list models")
    models.set_defaults(run=partial(run_api, list_models))


def list_models(args: argparse.Namespace, client, context: Context) -> int:
    """Print the models as {"models": [...]}."""
    print_json({"models": client.models()}, context.stdout)
    return EXIT_OK
