"""Build the app as gunicorn does (its own Services) and check what that does to the process."""

from __future__ import annotations

import gc
import logging

from web.app import create_app


def test_a_server_process_freezes_what_it_built_out_of_full_collections(settings):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    gc.unfreeze()
    try:
        create_app(settings)  # no Services passed: built for a real server, nothing connects yet
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        root.handlers[:], root.level = handlers, level  # it took over the process's logging


def test_an_app_on_given_services_leaves_the_collector_alone(settings, redis, store, registry,
                                                              clock):
    from tests.conftest import make_services
    gc.unfreeze()
    create_app(services=make_services(settings, redis, store, registry, "http://127.0.0.1:9",
                                      clock))
    assert gc.get_freeze_count() == 0
