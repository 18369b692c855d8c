"""Payloads are checked at send all the way down, ids are looked up there, and every actor is discoverable.

A nested typo (training options, model arguments, a campaign spec, method parameters, deployment
options) is refused by ``send()`` with ``PayloadInvalid`` naming the field; an id that names no
dataset or experiment is refused there too when the producer can read the database, and sent
unchecked when it cannot. ``pfd actors``, ``pfd schema`` and docs/actors.md come from the schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
import structlog
from typer.testing import CliRunner

from actors.cli import app as cli
from actors.deploy import deploy_experiment
from actors.features import extract_features
from actors.hpo import run_hpo_campaign
from actors.nas import run_nas_campaign
from actors.platform import references
from actors.platform.errors import PayloadInvalid
from actors.store.experiments import create_experiment
from actors.training import train_model
from actors.xai import explain_batch, explain_signal
from config.settings import get_settings
from tests.records import record_dataset

runner = CliRunner()
HOUR_MS = 3_600_000  # accepted messages are delayed past the test, so no worker ever takes them
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
SIGNAL = {"dataset_id": "ds-x", "split": "test", "record": 0}


@pytest.mark.parametrize(("actor", "kwargs", "problem"), [
    (train_model, {"dataset_id": "ds-x", "model_key": "cnn1d", "training": {"epochz": 3}},
     "training: unknown training option(s) epochz"),
    (train_model, {"dataset_id": "ds-x", "model_key": "cnn1d", "model_args": {"widht": 8}},
     "model_args: unknown argument(s) widht for model 'cnn1d'"),
    (train_model, {"dataset_id": "ds-x", "model_key": "cnn1d", "model_args": {"width": "wide"}},
     "model_args: argument 'width' of model 'cnn1d' must be int"),
    (train_model, {"dataset_id": "ds-x", "model_key": "cnn9"}, "model_key: unknown model 'cnn9'"),
    (train_model, {"dataset_id": "ds-x", "model_key": "rf", "training": {"epochs": 3}},
     "training: training options apply to deep models only"),
    (run_hpo_campaign, {"dataset_id": "ds-x", "spec": {"model_key": "cnn1d", "space": SPACE, "training": {"epochz": 3}}},
     "spec: unknown training option(s) epochz"),
    (run_hpo_campaign, {"dataset_id": "ds-x", "spec": {"model_key": "cnn1d", "space": SPACE, "model_args": {"widht": 8}}},
     "spec: unknown argument(s) widht for model 'cnn1d'"),
    (run_hpo_campaign, {"dataset_id": "ds-x", "spec": {"model_key": "cnn1d", "space": {"widht": SPACE["lr"]}}},
     "spec: parameter 'widht' is neither an argument of model 'cnn1d'"),
    (run_hpo_campaign, {"dataset_id": "ds-x", "spec": {"model_key": "cnn1d", "space": {
        "lr": {"type": "float", "low": 1e-3, "high": 50.0}}}}, "spec: parameter 'lr' = 50.0 is refused"),
    (run_nas_campaign, {"dataset_id": "ds-x", "spec": {"training": {"epochz": 3}}}, "spec: unknown training option(s) epochz"),
    (run_nas_campaign, {"dataset_id": "ds-x", "spec": {"space": {"opz": ["conv3"]}}}, "spec: NAS space: unknown key(s) opz"),
    (explain_signal, {"experiment_id": "e", "signal": SIGNAL, "method": "gradcam", "params": {"steps": 3}},
     "params: unknown parameter(s) steps for method 'gradcam'"),
    (explain_batch, {"experiment_id": "e", "signals": [SIGNAL], "method": "lime", "params": {"n_samples": 1}},
     "params: parameter 'n_samples' of method 'lime' must be in [10"),
    (explain_batch, {"experiment_id": "e", "signals": [SIGNAL], "method": "saliency"}, "method: Input should be 'shap'"),
    (deploy_experiment, {"experiment_id": "e", "options": {"export": {"opsett": 17}}},
     "options.export.opsett: Extra inputs are not permitted"),
    (deploy_experiment, {"experiment_id": "e", "options": {"quantize": {"methods": ["int4"]}}},
     "options.quantize.methods.0: Input should be 'dynamic_int8'"),
], ids=["training", "model-arg", "model-arg-type", "model-key", "classical-training", "hpo-training", "hpo-model-arg",
        "hpo-space", "hpo-bound", "nas-training", "nas-space", "xai-param", "xai-range", "xai-method", "deploy-option",
        "deploy-method"])
def test_a_nested_typo_is_refused_at_send_naming_the_field(app, actor, kwargs, problem):
    with pytest.raises(PayloadInvalid, match="invalid payload") as refused:
        actor.send(**kwargs)
    assert problem in str(refused.value)


def test_checking_nested_configs_at_send_loads_no_torch():
    code = ("import sys, actors.app; from actors.training import train_model; from actors.hpo import run_hpo_campaign; "
            "train_model.message(dataset_id='d', model_key='resnet18', model_args={'base_width': 16}, training={'epochs': 2}); "
            "run_hpo_campaign.message(dataset_id='d', spec={'model_key': 'cnn1d', 'space': {'width': "
            "{'type': 'int', 'low': 8, 'high': 32}}}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


@pytest.fixture(scope="module")
def records(database, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One dataset and one experiment on it (rows only: nothing here runs them)."""
    dataset_id, experiment_id = f"ds-ref-{uuid.uuid4().hex[:8]}", f"exp-ref-{uuid.uuid4().hex[:8]}"
    record_dataset(database, dataset_id, tmp_path_factory.mktemp("ref") / "none.h5", status="running")
    create_experiment(database, experiment_id, dataset_id=dataset_id, model_key="cnn1d", model_args={}, training_config={})
    return {"dataset_id": dataset_id, "experiment_id": experiment_id}


def test_ids_that_name_no_record_are_refused_at_send(app, records):
    cases = [
        (train_model, {"dataset_id": "ds-nowhere", "model_key": "cnn1d"}, "dataset_id: no dataset with id 'ds-nowhere'"),
        (train_model, {"experiment_id": "exp-nowhere"}, "experiment_id: no experiment with id 'exp-nowhere'"),
        (run_hpo_campaign, {"dataset_id": "ds-nowhere", "spec": {"model_key": "cnn1d", "space": SPACE}},
         "dataset_id: no dataset with id 'ds-nowhere'"),
        (explain_batch, {"experiment_id": records["experiment_id"], "method": "gradcam",
                         "signals": [{**SIGNAL, "dataset_id": records["dataset_id"]}, {**SIGNAL, "dataset_id": "ds-nowhere"}]},
         "signals.1.dataset_id: no dataset with id 'ds-nowhere'"),
        (deploy_experiment, {"experiment_id": "exp-nowhere"}, "experiment_id: no experiment with id 'exp-nowhere'"),
        (extract_features, {"dataset_id": "ds-nowhere"}, "dataset_id: no dataset with id 'ds-nowhere'"),
    ]
    for actor, kwargs, problem in cases:
        with pytest.raises(PayloadInvalid) as refused:
            actor.send(**kwargs)
        assert problem in str(refused.value), actor.actor_name
    # Ids that exist pass, and the id of an experiment a message creates is not looked up.
    train_model.send_with_options(kwargs={"dataset_id": records["dataset_id"], "model_key": "cnn1d",
                                          "experiment_id": "exp-made-by-this-job"}, delay=HOUR_MS)
    explain_signal.send_with_options(kwargs={"experiment_id": records["experiment_id"], "method": "gradcam",
                                             "signal": {**SIGNAL, "dataset_id": records["dataset_id"]}}, delay=HOUR_MS)


@pytest.fixture
def producer_settings(monkeypatch):  # type: ignore[no-untyped-def]
    """Set PFD_* variables for this producer's settings only (workers keep theirs); restored afterwards."""
    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    monkeypatch.setattr(references, "_unreadable_until", 0.0)
    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_producer_without_the_database_sends_unchecked_and_tries_again_only_later(app, producer_settings, tmp_path):
    missing = {"dataset_id": "ds-nowhere", "model_key": "cnn1d"}
    producer_settings(PFD_SEND_CHECKS_RECORDS="0")
    train_model.send_with_options(kwargs=missing, delay=HOUR_MS)

    sqlite_file = tmp_path / "absent" / "pfd.sqlite3"
    producer_settings(PFD_SEND_CHECKS_RECORDS="1", PFD_DATABASE_URL=f"sqlite:///{sqlite_file}")
    train_model.send_with_options(kwargs=missing, delay=HOUR_MS)
    assert not sqlite_file.exists()  # looking did not create an empty database

    producer_settings(PFD_DATABASE_URL="postgresql+psycopg://pfd:secret@127.0.0.1:1/none")  # nothing listens there
    with structlog.testing.capture_logs() as logs:
        train_model.send_with_options(kwargs=missing, delay=HOUR_MS)
        train_model.send_with_options(kwargs=missing, delay=HOUR_MS)
    [warning] = [line for line in logs if line["event"] == "send.records_unchecked"]
    assert warning["log_level"] == "warning" and "secret" not in warning["reason"]


def test_pfd_actors_lists_every_actor_with_its_queue_limits_and_summary(app):
    result = runner.invoke(cli, ["actors", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["actor"]: row for row in json.loads(result.output)}
    assert set(rows) == set(app.broker.actors)
    train = rows["train_model"]
    assert (train["queue"], train["time_limit_s"], train["max_retries"]) == ("gpu_training", 12 * 3600, 2)
    assert train["summary"].startswith("Train the experiment's model")
    assert all(row["summary"] for row in rows.values() if row["module"].startswith("actors."))


def test_pfd_schema_shows_fields_defaults_allowed_values_and_nested_options(app):
    result = runner.invoke(cli, ["schema", "deploy_experiment", "--json"])
    assert result.exit_code == 0, result.output
    fields = {row["name"]: row for row in json.loads(result.output)["fields"]}
    assert fields["experiment_id"]["required"] and fields["experiment_id"]["names"] == "experiment"
    assert fields["options.export.opset"]["bounds"] == ["≤ 23"]  # below 13: refused with the reason
    assert fields["options.quantize.methods"]["allowed"] == ["dynamic_int8", "static_int8", "fp16"]
    assert fields["options.benchmark.batch_sizes"]["default"] == [1, 8, 32]

    view = json.loads(runner.invoke(cli, ["schema", "train_model", "--json"]).output)
    training = {row["name"]: row for row in view["options"]["training"]}
    assert training["optimizer"]["allowed"] == ["adam", "adamw", "sgd"] and training["epochs"]["default"] == 60
    assert {"cnn1d.width", "nas_net.layers"} <= {row["name"] for row in view["options"]["model_args"]}

    table = runner.invoke(cli, ["schema", "explain_signal"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "gradcam.layer" in table.output and "kernel_shap" in table.output
    unknown = runner.invoke(cli, ["schema", "train_modle"])
    assert unknown.exit_code == 2 and "unknown actor 'train_modle'" in unknown.output


def test_the_actor_reference_in_docs_is_up_to_date(app):
    result = runner.invoke(cli, ["reference", "--check"])
    assert result.exit_code == 0, f"{result.output}\nregenerate it: pfd reference"
