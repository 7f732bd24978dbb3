import pytest

from tests.conftest import make_services
from tests.support.dispatcher import RecordingDispatcher
from web.app import create_app


@pytest.fixture
def dispatcher():
    return RecordingDispatcher()


@pytest.fixture
def services(settings, redis, store, registry, clock):
    # Port 9 (discard) refuses connections: the backend is down unless a test says otherwise.
    return make_services(settings, redis, store, registry, "http://127.0.0.1:9", clock)


@pytest.fixture
def app(services, dispatcher):
    app = create_app(services=services, dispatcher=dispatcher)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


ALICE = auth("alice-secret-1")
BOB = auth("bob-secret-22")
OPS = auth("ops-secret-333")
ROOT = auth("root-secret-4444")


@pytest.fixture
def make_app(settings, redis, store, registry, clock, dispatcher):
    """Build another app on the same objects, with some settings changed."""
    def build(**changes):
        services = make_services(settings.replace(**changes), redis, store, registry,
                                 "http://127.0.0.1:9", clock)
        app = create_app(services=services, dispatcher=dispatcher)
        app.testing = True
        return app
    return build
