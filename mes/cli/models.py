"""Run `mes models` (list the models the service offers) and `mes models pull ID`."""

from __future__ import annotations

import argparse
from functools import partial

from mes.cli.common import EXIT_OK, Context, api_options, job_exit, print_json, run_api
from mes.cli.pulling import follow_pull
from mes.cli.tables import json_option, models_view, show, wants_table


def add_parser(commands) -> None:
    """Register `mes models` and `mes models pull` on `commands`."""
    models = commands.add_parser("models", parents=[api_options(), json_option()],
                                 help="list models, or pull one the backend lacks")
    models.set_defaults(run=partial(run_api, models_command))
    sub = models.add_subparsers(dest="models_command", metavar="{pull}")
    pull = sub.add_parser("pull", parents=[api_options(keep_parents=True),
                                           json_option(keep_parents=True)],
                          help="have the backend download a model, showing its progress")
    pull.add_argument("model_id", metavar="ID")


def models_command(args: argparse.Namespace, client, context: Context) -> int:
    """Run the chosen `mes models` command: the list unless a sub-command is named."""
    if args.models_command == "pull":
        return pull_model(args, client, context)
    return list_models(args, client, context)


def list_models(args: argparse.Namespace, client, context: Context) -> int:
    """Print the models: a table at a terminal, else {"models": [...]}."""
    models = client.models()
    if wants_table(args, context.stdout):
        show(models_view(models), context.stdout)
    else:
        print_json({"models": models}, context.stdout)
    return EXIT_OK


def pull_model(args: argparse.Namespace, client, context: Context) -> int:
    """Start a pull, show its progress on stderr until it ends, and exit by its outcome."""
    operation = follow_pull(client, client.pull(args.model_id), context.stderr)
    if wants_table(args, context.stdout):
        context.stdout.write(f"{args.model_id}: {operation.get('status')}"
                             + (f" ({operation['error'].get('message')})"
                                if operation.get("error") else "") + "\n")
    else:
        print_json(operation, context.stdout)
    return job_exit(operation)
