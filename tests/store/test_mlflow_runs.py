"""The kept MLflow run of each record: the first writer wins, later ones read it back."""

from __future__ import annotations

from actors.store.mlflow_runs import find_mlflow_run, keep_mlflow_run


def test_the_first_run_kept_for_a_record_stands_and_kinds_do_not_mix(database):
    assert find_mlflow_run(database, "experiment", "exp-keep") is None
    assert keep_mlflow_run(database, "experiment", "exp-keep", "run-a") == "run-a"
    # A second job that created its own run reads the first one back
    assert keep_mlflow_run(database, "experiment", "exp-keep", "run-b") == "run-a"
    assert find_mlflow_run(database, "experiment", "exp-keep") == "run-a"
    # The same id under another kind is another record
    assert keep_mlflow_run(database, "deployment", "exp-keep", "run-c") == "run-c"
    assert find_mlflow_run(database, "experiment", "exp-keep") == "run-a"
