"""The feature actors through real workers: the same features as a direct call, reuse, shards, rankings."""

from __future__ import annotations

import json

import dramatiq
import numpy as np
import pytest
from matplotlib.image import imread

from actors.features import (
    compute_correlation,
    compute_importance,
    extract_features,
    merge_feature_shards,
    select_features,
)
from actors.platform.errors import JobNotFound, PayloadInvalid
from actors.platform.fanout import get_fanout
from actors.platform.jobs import get_job, wait_for_job
from actors.store.analyses import get_analysis, get_feature_set
from pipeline.evaluation.feature_sets import extract_dataset_features, load_selection
from pipeline.features import FEATURE_NAMES, feature_names, load_feature_set
from tests.evaluation.conftest import copy_dataset
from tests.records import artifact, written
from tests.waiting import wait_until

RESULT_MS = 3_000


def _result(message: dramatiq.Message) -> dict:
    """The job's result as the results backend returns it, checked to be plain JSON."""
    # Wait on the job record first: a blocking read of the backend longer than the Redis
    # client's socket timeout (5 s) fails on a busy machine before the job has finished.
    job = wait_for_job(message.message_id, timeout_s=180)
    assert job.state == "succeeded", (job.actor, job.error_type, job.error_message)
    result = message.get_result(block=True, timeout=RESULT_MS)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    return result


def _known(message_id: str) -> bool:
    try:
        return get_job(message_id) is not None
    except JobNotFound:
        return False


def _assert_same_rows(saved, direct) -> None:  # type: ignore[no-untyped-def]
    assert saved.names == direct.names
    for name in ("values", "labels", "splits", "record_ids"):
        np.testing.assert_array_equal(getattr(saved, name), getattr(direct, name))


@pytest.fixture(scope="module")
def extracted(workers, tiny_dataset):  # type: ignore[no-untyped-def]
    """The dataset's features, extracted by a cpu_processing worker in one job."""
    message = extract_features.send(dataset_id=tiny_dataset["dataset_id"])
    return message, _result(message)


def test_worker_extraction_equals_a_direct_call_of_the_same_function(extracted, tiny_dataset):
    _, result = extracted
    assert result["status"] == "completed" and not result["reused"] and result["shards"] == 1
    assert result["n_windows"] == 60 and result["n_features"] == len(FEATURE_NAMES)
    assert result["split_counts"] == {"train": 30, "val": 15, "test": 15}
    direct = extract_dataset_features(tiny_dataset["path"], tiny_dataset["split_counts"])
    saved = load_feature_set(artifact(result["path"]))
    _assert_same_rows(saved, direct)
    assert saved.provenance["dataset_checksum"] == tiny_dataset["checksum"]


def test_a_recorded_feature_set_is_reused_not_extracted_again(extracted, tiny_dataset):

    _, first = extracted
    stamp = written(first["path"]).stat().st_mtime_ns
    again = _result(extract_features.send(dataset_id=tiny_dataset["dataset_id"]))
    assert again["reused"] and again["feature_set_id"] == first["feature_set_id"]
    assert written(first["path"]).stat().st_mtime_ns == stamp


def test_the_old_domain_all_is_an_alias_of_every_domain_and_one_domain_name_of_that_domain(extracted, tiny_dataset):
    _, first = extracted
    alias = _result(extract_features.send(dataset_id=tiny_dataset["dataset_id"], domain="all"))
    assert alias["reused"] and alias["feature_set_id"] == first["feature_set_id"]
    one = _result(extract_features.send(dataset_id=tiny_dataset["dataset_id"], domain="time"))
    assert one["feature_set_id"].endswith("-time") and one["n_features"] == len(feature_names(["time"]))
    with pytest.raises(PayloadInvalid, match="'domains' or its alias 'domain', not both"):
        extract_features.send(dataset_id=tiny_dataset["dataset_id"], domain="all", domains=["time"])
    with pytest.raises(PayloadInvalid, match="unknown"):
        extract_features.send(dataset_id=tiny_dataset["dataset_id"], domain="spectral")


def test_large_datasets_fan_out_in_record_shards_and_merge_to_the_same_features(workers, database, tiny_dataset):
    copy = copy_dataset(database, tiny_dataset, "ds-eval-sharded")
    message = extract_features.send(dataset_id=copy["dataset_id"], records_per_shard=2)
    started = _result(message)
    assert started["status"] == "running" and started["shards"] == 7 and started["fanout_id"]
    merge = dramatiq.Message(queue_name="high_priority", actor_name=merge_feature_shards.actor_name, args=(),
                             kwargs={}, options={}, message_id=started["merge_message_id"])
    # The merge message is sent only when the last shard is done: wait for its job to exist.
    wait_until(lambda: _known(merge.message_id), timeout=120, what="the merge job")
    merged = _result(merge)
    assert merged["status"] == "completed" and merged["shards"] == 7
    assert get_feature_set(database, started["feature_set_id"])["status"] == "completed"
    view = wait_until(lambda: (v := get_fanout(started["fanout_id"])) and v.state == "completed" and v,
                      what="the fan-out to finish")
    assert (view.total, view.done, view.failed) == (7, 7, 0)
    direct = extract_dataset_features(copy["path"], copy["split_counts"])
    _assert_same_rows(load_feature_set(artifact(merged["path"])), direct)


def test_importance_ranks_every_feature_by_each_method_and_draws_a_chart(extracted, tiny_dataset, database):
    _, features = extracted
    message = compute_importance.send(dataset_id=tiny_dataset["dataset_id"], methods=["mutual_info", "random_forest"],
                                      top=10)
    result = _result(message)
    assert result["status"] == "completed" and result["kind"] == "importance"
    ranked = result["result"]["importance"]
    assert set(ranked) == {"mutual_info", "random_forest"}
    assert sorted(r["name"] for r in ranked["random_forest"]) == sorted(FEATURE_NAMES)
    assert result["result"]["feature_set_id"] == features["feature_set_id"]  # reused, not extracted
    assert result["result"]["n_rows"] == 30  # the train split only
    assert imread(artifact(result["plot_paths"]["importance"])).ndim == 3
    assert get_analysis(database, result["analysis_id"])["result"] == result["result"]


def test_a_selection_is_saved_where_classical_training_can_load_it(extracted, tiny_dataset):
    message = select_features.send(dataset_id=tiny_dataset["dataset_id"], method="mrmr", k=5)
    result = _result(message)
    assert len(result["result"]["names"]) == 5
    selection = load_selection(artifact(result["artifact_path"]))
    assert selection["names"] == result["result"]["names"] and selection["method"] == "mrmr"


def test_correlation_lists_pairs_above_the_threshold_and_draws_a_heat_map(extracted, tiny_dataset):
    message = compute_correlation.send(dataset_id=tiny_dataset["dataset_id"], domains=["time"], threshold=0.95)
    result = _result(message)
    body = result["result"]
    assert len(body["matrix"]) == len(body["names"]) == len(feature_names(["time"])) and body["matrix"][0][0] == 1.0
    assert all(abs(pair["r"]) >= 0.95 for pair in body["pairs"])
    assert imread(artifact(result["plot_paths"]["correlation"])).shape[2] in (3, 4)
    # A domain of its own is its own feature set, extracted by this job.
    assert body["feature_set_id"].endswith("-time")


@pytest.mark.parametrize(
    ("actor", "kwargs", "message"),
    [
        (extract_features, {"domains": ["time", "sound"]}, "unknown feature domain(s) ['sound']"),
        (compute_importance, {"methods": ["shap"]}, "unknown importance method(s) ['shap']"),
        (select_features, {"method": "lasso", "k": 3}, "unknown selection method 'lasso'"),
        (select_features, {"method": "rfe"}, "rfe needs k, the number of features to keep"),
    ],
    ids=["unknown-domain", "unknown-importance-method", "unknown-selection-method", "k-missing"],
)
def test_bad_feature_requests_are_refused_on_send_and_fail_once_when_sent_around_it(workers, actor, kwargs, message):
    kwargs = {"dataset_id": "ds-eval-tiny", **kwargs}
    with pytest.raises(PayloadInvalid) as refused:
        actor.send(**kwargs)
    assert message in str(refused.value)
    # A message built by hand (another producer) skips the send-side check: the worker refuses it once.
    raw = dramatiq.Message(queue_name="cpu_processing", actor_name=actor.actor_name, args=(), kwargs=kwargs, options={})
    dramatiq.get_broker().enqueue(raw)
    job = wait_for_job(raw.message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "PayloadInvalid")
    assert message in job.error_message


def test_k_beyond_the_feature_sets_columns_is_refused_by_the_worker_once(extracted, tiny_dataset):
    # The columns to keep are the domains' features per channel of the dataset: the worker,
    # holding the feature set, refuses a k beyond them, once, keeping the feature set.
    message = select_features.send(dataset_id=tiny_dataset["dataset_id"], method="rfe", k=8, domains=["time"])
    job = wait_for_job(message.message_id, timeout_s=120)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "InvalidInput")
    assert "k=8 is more than the 7 features to select from" in job.error_message
