"""Without ``PFD_MLFLOW_TRACKING_URI`` nothing is tracked and mlflow is never imported."""

from __future__ import annotations

import os
import subprocess
import sys

from tests import env

PROBE = """
import sys
import actors.app, actors.training, actors.hpo, actors.nas, actors.deploy, actors.cli
from actors.platform.mlflow_writer import mlflow_writer
from config.settings import get_settings
assert mlflow_writer(get_settings()) is None
print(sorted(name for name in sys.modules if name.split('.')[0] == 'mlflow'))
"""


def test_without_a_tracking_uri_there_is_no_writer_and_mlflow_is_never_imported():
    environment = {k: v for k, v in {**os.environ, **env.TEST_ENV}.items() if not k.startswith("PFD_MLFLOW_")}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
