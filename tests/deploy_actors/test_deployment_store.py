"""The deployment record: keyed by (experiment, config), launched once, stages claimed and completed
once, a failure recorded with its stage."""

from __future__ import annotations

import pytest

from actors.platform.errors import RecordConflict
from actors.store import deployments as store
from tests.deploy_actors.conftest import MODEL, TRAINING

ORIGINAL = {"name": "torch_fp32", "kind": "torch", "path": "/x/best.pt", "size": 1, "sha256": "0" * 64, "metrics": {}}


@pytest.fixture(scope="module")
def experiment_id(database) -> str:  # type: ignore[no-untyped-def]
    """A bare experiment row for deployments to point at."""
    from actors.store.datasets import claim_dataset
    from actors.store.experiments import create_experiment

    claim_dataset(database, "ds-dep-store", "test-setup", source="generator", name="rows only")
    create_experiment(database, "exp-dep-store", dataset_id="ds-dep-store", **MODEL, training_config=TRAINING,
                      name="rows only", campaign_id=None)
    return "exp-dep-store"


def _open(database, deployment_id, job_id, experiment_id, config):  # type: ignore[no-untyped-def]
    return store.open_deployment(database, deployment_id, job_id, experiment_id=experiment_id, config=config,
                                 config_hash=store.deployment_id_for(experiment_id, config)[1], original=ORIGINAL)


def test_the_same_experiment_and_config_give_the_same_deployment_id():
    assert store.deployment_id_for("e", {"a": 1, "b": 2}) == store.deployment_id_for("e", {"b": 2, "a": 1})
    assert store.deployment_id_for("e", {"a": 1})[0] != store.deployment_id_for("e", {"a": 2})[0]
    assert store.deployment_id_for("e", {"a": 1})[0] != store.deployment_id_for("f", {"a": 1})[0]


def test_a_deployment_is_launched_once_and_a_ready_one_is_kept(database, experiment_id):
    config = {"case": "launch"}
    deployment_id = store.deployment_id_for(experiment_id, config)[0]
    assert _open(database, deployment_id, "job-1", experiment_id, config).action == "launch"
    store.record_launch(database, deployment_id, "job-1", {"export": "m-1", "benchmark": "m-2"})
    # Another launcher while the pipeline runs leaves it alone; the same launcher (redelivered) may go on.
    assert _open(database, deployment_id, "job-2", experiment_id, config).action == "under_way"
    assert _open(database, deployment_id, "job-1", experiment_id, config).summary["stages"]["export"]["job_id"] == "m-1"
    for stage, job in (("export", "m-1"), ("benchmark", "m-2")):
        assert not store.claim_stage(database, deployment_id, stage, job).done
        store.complete_stage(database, deployment_id, stage, job, variants=[], result={"n": 1}, after=None,
                             status="ready" if stage == "benchmark" else "running", benchmark={"variants": []})
    ready = _open(database, deployment_id, "job-3", experiment_id, config)
    assert ready.action == "ready" and ready.summary["status"] == "ready" and ready.summary["job_id"] == "job-1"
    # A repeated stage message returns the recorded summary without redoing it.
    again = store.claim_stage(database, deployment_id, "export", "m-9")
    assert again.done and again.summary["job_id"] == "m-1" and again.summary["result"] == {"n": 1}


def test_a_stage_replaces_its_own_variants_and_another_job_cannot_take_it(database, experiment_id):
    deployment_id = "dep-store-variants"
    store.ensure_deployment(database, deployment_id, experiment_id=experiment_id, config={}, original=ORIGINAL)
    store.claim_stage(database, deployment_id, "quantize", "job-a")
    with pytest.raises(RecordConflict):
        store.claim_stage(database, deployment_id, "quantize", "job-b")
    fp16 = {**ORIGINAL, "name": "onnx_fp16", "kind": "onnx"}
    summary = store.complete_stage(database, deployment_id, "quantize", "job-a", variants=[fp16], result={},
                                   after={"stage": "export", "job_id": "x"}, status="partial")
    assert summary["variants"] == ["torch_fp32", "onnx_fp16"] and summary["after"]["stage"] == "export"
    assert store.get_deployment(database, deployment_id)["status"] == "partial"


def test_a_failed_stage_marks_the_deployment_and_a_relaunch_starts_afresh(database, experiment_id):
    config = {"case": "failure"}
    deployment_id = store.deployment_id_for(experiment_id, config)[0]
    _open(database, deployment_id, "job-1", experiment_id, config)
    store.record_launch(database, deployment_id, "job-1", {"export": "m-1", "optimize": "m-2"})
    store.claim_stage(database, deployment_id, "export", "m-1")
    assert not store.fail_stage(database, deployment_id, "export", "m-other", "not mine")
    assert store.fail_stage(database, deployment_id, "export", "m-1", "ParityError: off by 1")
    record = store.get_deployment(database, deployment_id)
    assert (record["status"], record["stage"], record["error"]) == ("failed", "export", "export: ParityError: off by 1")
    assert record["stages"]["optimize"]["status"] == "queued"
    relaunch = _open(database, deployment_id, "job-2", experiment_id, config)
    assert relaunch.action == "launch" and relaunch.summary["status"] == "queued"
    assert relaunch.summary["stages"] == {} and relaunch.summary["error"] is None
