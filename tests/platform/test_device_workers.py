"""One gpu_training worker per visible accelerator: ``pfd workers`` expands the Procfile's line."""

from __future__ import annotations

from typer.testing import CliRunner

from actors.cli import app as cli
from actors.cli.common import PROJECT_ROOT
from actors.cli.services import procfile_for_devices

PROCFILE = (PROJECT_ROOT / "Procfile").read_text()


def test_each_visible_device_gets_its_own_training_worker_and_the_rest_is_unchanged():
    lines = procfile_for_devices(PROCFILE, ["0", "1", "3"]).splitlines()
    training = [line for line in lines if line.startswith("gpu_training")]
    original = next(line for line in PROCFILE.splitlines() if line.startswith("gpu_training:"))
    command = original.partition(":")[2].strip()
    assert training == [f"gpu_training_{d}: CUDA_VISIBLE_DEVICES={d} {command}" for d in ("0", "1", "3")]
    assert [line for line in lines if not line.startswith("gpu_training")] == \
        [line for line in PROCFILE.splitlines() if not line.startswith("gpu_training")]


def test_one_device_or_none_keeps_the_procfile_as_it_is():
    assert procfile_for_devices(PROCFILE, []) == PROCFILE
    assert procfile_for_devices(PROCFILE, ["0"]) == PROCFILE


def test_pfd_workers_show_follows_cuda_visible_devices():
    shown = CliRunner().invoke(cli, ["workers", "--show"], env={"CUDA_VISIBLE_DEVICES": "2,5"})
    assert shown.exit_code == 0, shown.output
    assert "gpu_training_2: CUDA_VISIBLE_DEVICES=2 " in shown.output
    assert "gpu_training_5: CUDA_VISIBLE_DEVICES=5 " in shown.output
    assert "\ngpu_training:" not in shown.output
