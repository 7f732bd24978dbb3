"""Run `mes keys create|list|revoke`: manage the API keys kept in Redis."""

from __future__ import annotations

import argparse
import time
from functools import partial

from mes.cli.common import EXIT_OK, Context, UsageError, print_json, run_keys
from mes.cli.tables import json_option, keys_view, show, wants_table


def add_parser(commands) -> None:
    """Register `mes keys` and its create, list and revoke commands on `commands`."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--redis-url", help="where keys are kept (default: $MES_REDIS_URL)")
    keys = commands.add_parser("keys", help="create, list or revoke API keys kept in Redis")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", parents=[store],
                                     help="make a key and print it once")
    create.add_argument("--name", required=True, help="the key's name; its jobs belong to it")
    create.add_argument("--scopes", required=True, help="comma-separated: jobs, models, admin")
    create.set_defaults(run=partial(run_keys, create_key))
    key_commands.add_parser("list", parents=[store, json_option()],
                            help="list keys (never their secrets)"
                            ).set_defaults(run=partial(run_keys, list_keys))
    revoke = key_commands.add_parser("revoke", parents=[store],
                                     help="revoke a key at once; its name is never reused")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(run=partial(run_keys, revoke_key))


def create_key(args: argparse.Namespace, keystore, context: Context) -> int:
    """Make a key, print it with its secret once, and warn that it is never shown again."""
    from mes.keys import check_name, parse_api_keys, parse_scopes
    try:
        name, scopes = check_name(args.name), parse_scopes(args.scopes)
        settings_keys = parse_api_keys(context.environ.get("MES_API_KEYS", ""))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if name in {key.name for key in settings_keys}:
        raise UsageError(f"MES_API_KEYS already has a key named {name!r}")
    stored, secret = keystore.create(name, scopes, now=time.time())
    print_json({**stored.as_dict(), "key": secret}, context.stdout)
    context.stderr.write("mes: keep this key now; it is stored only as a hash and is never "
                         "shown again\n")
    return EXIT_OK


def list_keys(args: argparse.Namespace, keystore, context: Context) -> int:
    """Print the stored keys, never their secrets: a table at a terminal, else JSON."""
    keys = [key.as_dict() for key in keystore.list()]
    if wants_table(args, context.stdout):
        show(keys_view(keys), context.stdout)
    else:
        print_json({"keys": keys}, context.stdout)
    return EXIT_OK


def revoke_key(args: argparse.Namespace, keystore, context: Context) -> int:
    """Revoke a key at once and print it."""
    print_json(keystore.revoke(args.name, now=time.time()).as_dict(), context.stdout)
    return EXIT_OK
