"""Under gevent, the ingest's turns let a waiting greenlet run at each turn, not every 50th."""

from __future__ import annotations

import subprocess
import sys

# Run apart: monkey-patching would leak into the rest of the test session.
PROGRAM = r"""
from gevent import monkey; monkey.patch_all()
import gevent, time
from mes.intake.batches import YIELD_EVERY, let_others_run
ticks = 0
def ticker():
    global ticks
    while True:
        gevent.sleep(0.0005)  # a timer, as a socket read waiting for a request is a watcher
        ticks += 1
gevent.spawn(ticker)
gevent.sleep(0.001)
ticks = 0
for turn in range(1, 21):
    busy = time.perf_counter() + 0.002  # the CPU of checking YIELD_EVERY lines
    while time.perf_counter() < busy:
        pass
    let_others_run(turn * YIELD_EVERY)
print(ticks)
"""


def test_every_turn_lets_the_other_greenlets_run():
    ticks = int(subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                               check=True, timeout=60).stdout)
    # With sleep(0) the hub ran up to 50 turns' callbacks before its timers: about 0 ticks.
    assert ticks >= 15
