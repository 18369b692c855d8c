"""A real ``mlflow server`` of the tests' own: loopback, a free port, SQLite and a local artifact root.

It can be stopped and started again on the same port and stores, so a test can take MLflow
away from a running job and bring it back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests import env
from tests.servers import free_port
from tests.waiting import wait_until

__all__ = ["MlflowServer", "pfd_mlflow", "worker_env"]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with its stores under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> MlflowServer:
        """Start the server (again, on the same stores) and wait until ``/health`` answers."""
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{self.data_dir / 'mlflow.sqlite3'}",
                   "--artifacts-destination", str(self.data_dir / "artifacts")]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 (the process writes it until stopped)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(lambda: self._answers() or self.process.poll() is not None, timeout=180, interval=0.25,
                   what="mlflow server to answer")
        assert self.process.poll() is None, (self.data_dir / "server.log").read_text()[-3000:]
        return self

    def stop(self) -> None:
        """Stop the server and every process it started; wait until the port is closed."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        wait_until(lambda: not self._answers(), timeout=30, what="mlflow server to stop")


def worker_env(server: MlflowServer) -> dict[str, str]:
    """The variables that point a worker at ``server``, with short retries and waits for tests."""
    return {"PFD_MLFLOW_TRACKING_URI": server.uri, "PFD_MLFLOW_RETRY_MAX_S": "1",
            "PFD_MLFLOW_FLUSH_WAIT_S": "1", "PFD_MLFLOW_HTTP_TIMEOUT_S": "2"}


def pfd_mlflow(server: MlflowServer, *args: str) -> dict:
    """Run ``pfd mlflow ARGS --json`` as an operator would, pointed at ``server``; return its output."""
    done = subprocess.run([str(Path(sys.executable).parent / "pfd"), "mlflow", *args, "--json"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env.TEST_ENV, **worker_env(server)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)
