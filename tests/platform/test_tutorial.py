"""docs/tutorial.md, executed: every ``$`` command, in order, against the real workers.

A command followed by ``# refused: exits N`` must exit with N; every other must exit 0.
The commands run as a person types them, through a shell, with the workers' environment.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests import env

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
_EXPECTED_EXIT = re.compile(r"\s+# refused: exits (\d+)$")


def tutorial_commands() -> list[tuple[str, int]]:
    """The tutorial's ``$`` commands in order, each with the exit code it must give."""
    commands = []
    for line in TUTORIAL.read_text().splitlines():
        if line.startswith("$ "):
            command = line[2:]
            expected = _EXPECTED_EXIT.search(command)
            commands.append((_EXPECTED_EXIT.sub("", command), int(expected.group(1)) if expected else 0))
    return commands


def test_the_tutorial_runs_from_the_dataset_to_the_deployment(workers, tmp_path):
    commands = tutorial_commands()
    assert [shlex.split(c)[:2] for c, _ in commands][:1] == [["pfd", "send"]] and len(commands) >= 10
    shell_env = {**os.environ, **env.TEST_ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                 "COLUMNS": "160"}
    outputs = []
    for command, expected in commands:
        run = subprocess.run(command, shell=True, cwd=ROOT, env=shell_env, capture_output=True, text=True,
                             timeout=600, check=False)
        outputs.append(run.stdout)
        assert run.returncode == expected, f"{command}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    by_command = dict(zip((c for c, _ in commands), outputs))
    deploy = next(out for command, out in by_command.items() if command.startswith("pfd send deploy_experiment"))
    assert "recommended" in deploy  # the benchmark's recommendation ends the deployment's follow
    refused = next(out for (command, expected), out in zip(commands, outputs) if expected)
    assert "epochz" in refused  # the refusal names the field at fault
    status = next(out for command, out in by_command.items() if command.startswith("pfd status"))
    assert "train_model" in status and "succeeded" in status
