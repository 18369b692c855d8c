"""The evaluation actors through real workers, on models the gpu_training worker just trained."""

from __future__ import annotations

import json

import dramatiq
import pytest
from matplotlib.image import imread

from actors.evaluation import compare_architectures, error_analysis, robustness_report, roc_analysis
from actors.platform.jobs import wait_for_job
from actors.store.analyses import get_analysis
from actors.store.experiments import claim_experiment, complete_experiment, create_experiment
from actors.store.notifications import list_inbox
from tests.records import artifact
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
    assert result["status"] == "completed", result
    for path in result["plot_paths"].values():
        assert imread(artifact(path)).ndim == 3  # every PNG opens as an image
    return result


def _notified(database, analysis_id: str) -> dict:  # type: ignore[no-untyped-def]
    """The inbox row of the analysis's ``evaluation.completed`` event (delivered by the worker)."""
    def find():  # type: ignore[no-untyped-def]
        rows = [r for r in list_inbox(database, "default", limit=200) if r["event_type"] == "evaluation.completed"]
        return next((r for r in rows if r["payload"]["evaluation_id"] == analysis_id), None)

    return wait_until(find, timeout=60, what=f"evaluation.completed for {analysis_id}")


def test_roc_analysis_of_a_trained_model_gives_an_auc_per_present_class(trained, database):
    result = _result(roc_analysis.send(experiment_id="ev-cnn", analysis_id="an-roc-cnn"))
    body = result["result"]
    present = {k: c["auc"] for k, c in body["classes"].items() if c["auc"] is not None}
    assert list(body["classes"]) == list(present) == ["sain", "desequilibre", "oilwhirl"]  # 3 classes, 3 curves
    assert all(0.5 <= auc <= 1.0 for auc in present.values()) and 0.5 <= body["micro_auc"] <= 1.0
    assert body["n_windows"] == 15 and set(result["plot_paths"]) == {"roc"}
    assert get_analysis(database, "an-roc-cnn")["result"] == body
    event = _notified(database, "an-roc-cnn")
    assert event["payload"]["model_id"] == "ev-cnn" and event["payload"]["metrics"]["macro_auc"] == body["macro_auc"]


def test_a_completed_analysis_sent_again_is_returned_not_redone(trained, database):
    first = _result(roc_analysis.send(experiment_id="ev-rf", analysis_id="an-roc-rf"))
    again = _result(roc_analysis.send(experiment_id="ev-rf", analysis_id="an-roc-rf"))
    assert again == first


def test_error_analysis_gives_the_confusion_and_breakdowns_by_severity_and_condition(trained):
    result = _result(error_analysis.send(experiment_id="ev-rf", condition_bins=2))
    body = result["result"]
    counts = body["confusion"]["counts"]
    # A 3-class dataset gives a 3 x 3 matrix, rows and columns named.
    assert body["class_keys"] == ["sain", "desequilibre", "oilwhirl"] and [len(row) for row in counts] == [3, 3, 3]
    assert sum(map(sum, counts)) == 15
    assert body["misclassified"]["total"] == 15 - sum(counts[i][i] for i in range(3))
    assert "healthy" in body["by_severity"] and sum(g["windows"] for g in body["by_severity"].values()) == 15
    assert set(body["by_condition"]) == {"speed", "load", "temperature"}
    assert sum(b["windows"] for b in body["by_condition"]["load"]) == 15
    assert set(result["plot_paths"]) == {"confusion"}


def test_compare_architectures_profiles_each_model_and_finds_the_pareto_front(trained):
    result = _result(compare_architectures.send(experiment_ids=["ev-cnn", "ev-rf"], latency_windows=4, repeats=1))
    body = result["result"]
    models = {m["experiment_id"]: m for m in body["models"]}
    cnn, rf = models["ev-cnn"], models["ev-rf"]
    assert cnn["parameters"] == trained["ev-cnn"]["parameter_count"] > 0 and cnn["flops"] == 2 * cnn["macs"] > 0
    assert rf["parameters"] == 0 and rf["macs"] is None
    assert all(m["latency_ms"] > 0 and m["model_size_bytes"] > 0 and m["training_time_s"] > 0 for m in models.values())
    assert cnn["accuracy"] == trained["ev-cnn"]["test_accuracy"]
    assert body["pareto_front"] and set(body["pareto_front"]) <= {"ev-cnn", "ev-rf"}
    assert body["fastest"] in body["pareto_front"] and body["most_accurate"] in models


def test_robustness_is_near_clean_accuracy_at_high_snr_and_lower_at_5_db(trained):
    result = _result(robustness_report.send(experiment_id="ev-rf", snr_db=[40, 20, 5], seed=3))
    body = result["result"]
    clean = body["clean"]["accuracy"]
    by_snr = {level["snr_db"]: level for level in body["levels"]}
    assert clean == trained["ev-rf"]["test_accuracy"]
    assert by_snr[40.0]["accuracy"] == pytest.approx(clean, abs=0.1)
    assert by_snr[20.0]["accuracy"] == pytest.approx(clean, abs=0.1)
    assert by_snr[5.0]["accuracy"] < clean
    assert list(by_snr[5.0]["by_class"]) == list(body["clean"]["by_class"]) == ["sain", "desequilibre", "oilwhirl"]


def test_an_experiment_with_no_saved_predictions_fails_once_with_a_clear_error(workers, database, tiny_dataset):
    create_experiment(database, "ev-nopred", dataset_id=tiny_dataset["dataset_id"], model_key="rf",
                      model_args={}, training_config={})
    claim_experiment(database, "ev-nopred", "test-setup", spec=None, checkpoint_dir="unused")
    complete_experiment(database, "ev-nopred", "test-setup", metrics={"window_accuracy": 1.0})
    message = roc_analysis.send(experiment_id="ev-nopred", analysis_id="an-nopred")
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "InvalidInput")
    assert "experiment 'ev-nopred' has no saved predictions" in job.error_message
    analysis = get_analysis(database, "an-nopred")
    assert analysis["status"] == "failed" and "no saved predictions" in analysis["error"]


def test_an_unknown_experiment_fails_once_and_a_duplicate_list_is_refused_on_send(workers):
    from actors.platform.errors import PayloadInvalid

    with pytest.raises(PayloadInvalid, match="no experiment with id 'ev-nowhere'"):
        robustness_report.send(experiment_id="ev-nowhere")
    # Sent by a producer that cannot read the database, the worker refuses it at once.
    message = dramatiq.get_broker().enqueue(robustness_report.message(experiment_id="ev-nowhere"))
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "RecordNotFound")
    with pytest.raises(PayloadInvalid, match="listed twice"):
        compare_architectures.send(experiment_ids=["ev-rf", "ev-rf"])
