"""Bad deployment input: refused on send where the payload schema can tell, else failed at once by the
worker with a clear reason, never retried."""

from __future__ import annotations

import typing

import dramatiq
import pytest

from actors import deploy
from actors.deploy import deploy_experiment, export_onnx, optimize_model, quantize_model
from actors.platform.errors import PayloadInvalid
from actors.platform.jobs import wait_for_job


@pytest.mark.parametrize(("actor", "kwargs", "problem"), [
    (export_onnx, {"experiment_id": "e", "opset": 12}, "per-channel scales"),
    (deploy_experiment, {"experiment_id": "e", "options": {"benchmark": {"model_types": ["onnx_int4"]}}},
     "model_types"),
    (export_onnx, {"experiment_id": "e", "opset": 24}, "opset"),
    (deploy_experiment, {"experiment_id": "e", "options": {"export": {"opset": 99}}}, "options.export.opset"),
    (optimize_model, {"experiment_id": "e", "amount": 0.96}, "amount"),
    (optimize_model, {"experiment_id": "e", "amount": -0.1}, "amount"),
    (deploy_experiment, {"experiment_id": "e", "options": {"optimize": {"amount": 1.0}}}, "options.optimize.amount"),
    (optimize_model, {"experiment_id": "e", "prune_method": "magic"}, "prune_method"),
    (optimize_model, {"experiment_id": "e", "prune_method": None, "fuse": False}, "would do nothing"),
    (quantize_model, {"experiment_id": "e", "methods": ["fp16", "fp16"]}, "listed twice"),
    (quantize_model, {"deployment_id": "d", "experiment_id": "e"}, "not both"),
    (deploy_experiment, {"experiment_id": "../etc"}, "experiment_id"),
])
def test_bad_payloads_are_refused_on_send(app, actor, kwargs, problem):
    with pytest.raises(PayloadInvalid, match="invalid payload") as raised:
        actor.send(**kwargs)
    assert problem in str(raised.value)


def test_the_payload_limits_are_the_pipeline_limits():
    from pipeline.deploy import export, optimize

    assert (deploy.MIN_OPSET, deploy.MAX_OPSET) == (export.MIN_OPSET, export.MAX_OPSET)
    assert deploy.OPSET_FLOOR_REASON == export.OPSET_FLOOR_REASON
    assert deploy.MAX_PRUNE_AMOUNT == optimize.MAX_PRUNE_AMOUNT
    methods = typing.get_args(deploy.OptimizeOptions.model_fields["prune_method"].annotation)
    assert set(typing.get_args(methods[0])) == set(optimize.PRUNE_METHODS)


def _failed(actor, **kwargs):  # type: ignore[no-untyped-def]
    job = wait_for_job(actor.send(**kwargs).message_id, timeout_s=60)
    assert job.state == "failed" and job.attempts == 1, (job.state, job.error_type, job.error_message)
    return job


def test_an_experiment_without_a_checkpoint_is_refused_by_every_entry_point(workers, untrained):
    for actor in (deploy_experiment, export_onnx):
        job = _failed(actor, experiment_id=untrained)
        assert job.error_type == "InvalidInput"
        assert f"experiment {untrained!r} has no checkpoint to deploy (status pending" in job.error_message


def test_a_missing_deployment_or_experiment_is_refused(workers):
    job = _failed(quantize_model, deployment_id="dep-does-not-exist")
    assert (job.error_type, job.error_message) == ("RecordNotFound", "no deployment with id 'dep-does-not-exist'")
    with pytest.raises(PayloadInvalid, match="experiment_id: no experiment with id 'exp-does-not-exist'"):
        deploy_experiment.send(experiment_id="exp-does-not-exist")
    # A producer that cannot read the database sends it anyway: the worker refuses it at once.
    message = dramatiq.get_broker().enqueue(deploy_experiment.message(experiment_id="exp-does-not-exist"))
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "RecordNotFound")
    job = _failed(optimize_model)
    assert job.error_type == "InvalidInput" and "needs deployment_id or experiment_id" in job.error_message
