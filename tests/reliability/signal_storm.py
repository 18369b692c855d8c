"""Log lines interrupted by SIGTERM, many times over, in a process set up like a worker.

Run as ``python -m tests.reliability.signal_storm ROUNDS``: Dramatiq's worker handler (which
logs) is installed, then ``GracefulShutdown`` takes it over, then every log write of the main
thread is interrupted by SIGTERM while it holds the lock. Prints one JSON summary line on
standard output when it got through every round.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time

from tests import env

env.apply()

import structlog

from actors.platform.middleware.shutdown import GracefulShutdown
from config.logging import configure_logging
from config.settings import get_settings
from tests.log_write_signals import signal_inside_log_writes

stops: list[int] = []


def dramatiq_term_handler(signum: int, frame: object) -> None:
    """What Dramatiq's worker process installs: it logs, then ends the main loop."""
    logging.getLogger("dramatiq.WorkerProcess").info("Stopping worker process...")
    stops.append(signum)


def main(rounds: int) -> None:
    """Log ``rounds`` lines from the main thread, each interrupted by SIGTERM mid-write."""
    configure_logging(get_settings())
    signal.signal(signal.SIGTERM, dramatiq_term_handler)
    GracefulShutdown(grace_s=3600).after_process_boot(None)
    main_thread = threading.main_thread()
    signal_inside_log_writes(signal.SIGTERM, lambda data: threading.current_thread() is main_thread)
    log = structlog.get_logger("storm")
    stdlib = logging.getLogger("storm.stdlib")
    for i in range(rounds):
        log.info("storm.line", i=i, pad="x" * 200)
        stdlib.info("storm stdlib line %d", i)
    # The shutdown thread reacts on its own time: give it a deadline to pass the first on.
    deadline = time.monotonic() + 10
    while not stops and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"rounds": rounds, "dramatiq_stops": len(stops)}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
