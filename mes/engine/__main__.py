"""Run the engine: `python -m mes.engine --simulated [--port N] ...`."""

import sys

from mes.engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
