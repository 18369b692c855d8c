"""``pfd workers --role``: each kind of host runs its part of the Procfile, and the parts
together are the whole of it, with the scheduler on exactly one host."""

from __future__ import annotations

from typer.testing import CliRunner

from actors.cli import app as cli
from actors.cli.common import PROJECT_ROOT
from actors.cli.services import HOST_ROLES, procfile_for_roles

PROCFILE = (PROJECT_ROOT / "Procfile").read_text()


def _names(procfile: str) -> list[str]:
    return [line.partition(":")[0] for line in procfile.splitlines() if line.strip()]


def test_the_roles_cover_the_procfile_with_one_scheduler():
    per_role = {role: _names(procfile_for_roles(PROCFILE, [role])) for role in HOST_ROLES}
    assert per_role["training"] == ["gpu_training", "metrics"]
    assert per_role["cpu"] == ["cpu_processing", "metrics"]
    assert "scheduler" in per_role["control"] and "gpu_training" not in per_role["control"]
    # Every Procfile line runs somewhere; the scheduler on one role only
    assert set().union(*per_role.values()) == set(_names(PROCFILE))
    assert sum("scheduler" in names for names in per_role.values()) == 1
    # Lines keep their Procfile commands and order; no role is the whole Procfile
    lines = procfile_for_roles(PROCFILE, ["cpu", "control"]).splitlines()
    assert lines == [line for line in PROCFILE.splitlines() if line.partition(":")[0] in
                     set(HOST_ROLES["cpu"]) | set(HOST_ROLES["control"])]
    assert procfile_for_roles(PROCFILE, []) == PROCFILE


def test_pfd_workers_shows_a_training_hosts_lines_one_per_device():
    shown = CliRunner().invoke(cli, ["workers", "--show", "--role", "training"], env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert shown.exit_code == 0, shown.output
    assert _names(shown.output) == ["gpu_training_0", "gpu_training_1", "metrics"]


def test_an_unknown_role_is_refused_naming_the_roles():
    refused = CliRunner().invoke(cli, ["workers", "--show", "--role", "gpu"])
    assert refused.exit_code != 0
    said = " ".join(refused.output.replace("│", " ").split())  # rich wraps the message in a box
    assert "unknown role(s) ['gpu']; roles: training, cpu, control" in said
