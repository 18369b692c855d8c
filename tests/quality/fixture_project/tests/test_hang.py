"""A test that never ends, with a child process of its own (run only with ``-m hang``)."""

import os
import subprocess
import sys
import time

import pytest


@pytest.mark.hang
def test_hangs_forever():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pid_file = os.environ.get("HANG_PID_FILE")
    if pid_file:
        # Tells the outer test which process group and child to look for afterwards.
        with open(pid_file, "w") as handle:
            handle.write(f"{os.getpgid(0)} {child.pid}")
    time.sleep(600)
