"""Hold the module-level Celery app that the `celery` CLI loads (`-A workers.entry`)."""

import os

from mes.settings import Settings
from workers.app import make_celery

# The one place where import builds something: the Celery CLI needs an app object here.
app = make_celery(Settings.from_env(os.environ))
