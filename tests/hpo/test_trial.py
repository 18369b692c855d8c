"""One trial in process: validation-only scoring, Hyperband pruning per epoch, the study's storage."""

from __future__ import annotations

import pytest

from tests.hpo.conftest import TINY_MODEL, TINY_TRAINING


@pytest.fixture(scope="module")
def data(hpo_dataset):  # type: ignore[no-untyped-def]
    from pipeline.training import load_training_data

    return load_training_data(hpo_dataset["path"])


def test_a_trial_never_sees_the_test_split(data):
    from pipeline.hpo.trial import validation_only

    scoped = validation_only(data)
    assert scoped.test is data.val and scoped.train is data.train and scoped.val is data.val


def test_a_trial_reports_each_epoch_and_scores_on_validation(data, tmp_path):
    import optuna

    from pipeline.hpo.study import make_pruner
    from pipeline.hpo.trial import run_trial

    study = optuna.create_study(direction="maximize", pruner=make_pruner("bayesian", 2))
    trial = study.ask()
    outcome = run_trial(trial, "val_accuracy", "cnn1d", TINY_MODEL, TINY_TRAINING, data, tmp_path)
    assert outcome.state == "complete" and outcome.value == outcome.result.best_val_accuracy
    assert sorted(study.trials[0].intermediate_values) == [1, 2]
    # What train_deep calls its test metrics were computed on the validation windows.
    assert outcome.result.test["n_windows"] == len(data.val)


def test_a_deep_trial_on_macro_f1_scores_its_best_weights_on_validation_and_reports_no_epochs(data, tmp_path):
    import optuna

    from pipeline.hpo.trial import evaluate_on_test, run_trial, validation_only

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    outcome = run_trial(trial, "val_f1_macro", "cnn1d", TINY_MODEL, TINY_TRAINING, data, tmp_path)
    # Macro F1 is measured once, on validation: no per-epoch value means nothing to prune on.
    assert outcome.state == "complete" and study.trials[0].intermediate_values == {}
    rescored = evaluate_on_test(outcome.result.model_path, validation_only(data))
    assert outcome.value == pytest.approx(rescored["f1_macro"]) == pytest.approx(outcome.result.test["f1_macro"])


def test_classical_trials_extract_each_split_once_per_process_and_score_on_validation(data, tmp_path):
    from pipeline.hpo import trial as trials

    first = trials.run_classical_trial("val_accuracy", "rf", {"n_estimators": 10}, data, "ds-t:1", tmp_path / "a")
    cached = {key: array for key, array in trials._FEATURES.items() if key[0] == "ds-t:1"}
    # train and val, once each (the trial's "test" split is val again); never the test split.
    assert set(cached) == {("ds-t:1", "train"), ("ds-t:1", "val")}
    second = trials.run_classical_trial("val_loss", "gbm", {"max_iter": 10}, data, "ds-t:1", tmp_path / "b")
    # The second trial reused the very arrays: nothing was extracted again.
    assert all(trials._FEATURES[key] is array for key, array in cached.items())
    assert first.value == first.result.best_val_accuracy and first.result.test["n_windows"] == len(data.val)
    assert second.value > 0 and second.result.model_path.endswith("model.skops")


def test_hyperband_prunes_a_trial_that_reports_worse_than_its_bracket(data, tmp_path):
    import optuna

    from pipeline.hpo.study import make_pruner
    from pipeline.hpo.trial import run_trial

    study = optuna.create_study(direction="maximize", pruner=make_pruner("hyperband", 3))
    for _ in range(12):  # earlier trials that reported an unbeatable score at every epoch
        earlier = study.ask()
        for epoch in (1, 2, 3):
            earlier.report(2.0, epoch)
            earlier.should_prune()  # as run_trial does: the pruner records the trial at its rungs
        study.tell(earlier, 2.0)
    outcome = run_trial(study.ask(), "val_accuracy", "cnn1d", TINY_MODEL, {**TINY_TRAINING, "epochs": 3}, data, tmp_path)
    assert outcome.state == "pruned" and outcome.result is None
    assert outcome.pruned_at_epoch in (1, 3) and 0.0 <= outcome.value <= 1.0


def test_studies_live_beside_the_project_tables_never_among_them():
    from pipeline.hpo.study import storage_target

    url, kwargs = storage_target("sqlite:////srv/pfd/var/pfd.sqlite3")
    assert url == "sqlite:////srv/pfd/var/pfd.optuna.sqlite3" and kwargs["connect_args"]["timeout"] == 30
    url, kwargs = storage_target("postgresql+psycopg://pfd:secret@db/pfd")
    assert url == "postgresql+psycopg://pfd:secret@db/pfd"
    assert kwargs["connect_args"]["options"] == "-csearch_path=optuna"
