"""Search spaces and campaign specs: bad ones refused with clear errors; methods map to real samplers."""

from __future__ import annotations

import itertools

import pytest

from actors.platform.errors import PayloadInvalid
from pipeline.errors import InvalidInput
from pipeline.hpo import check_campaign, parse_campaign
from tests.hpo.conftest import hpo_spec


@pytest.mark.parametrize(("change", "message"), [
    ({"space": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, r"'lr': low \(0.1\) is greater than high \(0.01\)"),
    ({"space": {"optimizer": {"type": "categorical", "choices": []}}}, r"'optimizer': 'choices' must be a non-empty list"),
    ({"n_trials": 0}, r"n_trials must be an integer in \[1, 10000\], got 0"),
    ({"method": "annealing"}, r"method must be one of bayesian, random, grid, hyperband, got 'annealing'"),
    ({"space": {}}, r"search space must be a non-empty object"),
    ({"space": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, r"log scale needs low > 0"),
    ({"space": {"lr": {"type": "decimal", "low": 0, "high": 1}}}, r"type must be one of float, int, categorical"),
    ({"space": {"width": {"type": "int", "low": 4.5, "high": 8}}}, r"'low' must be an integer"),
    ({"method": "grid", "space": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}}, r"grid search needs a finite set"),
    ({"method": "grid", "n_trials": 5, "space": {"kernel_size": {"type": "categorical", "choices": [3, 5]}}},
     r"grid has 2 points, fewer than n_trials=5"),
    ({"method": "hyperband", "space": {"epochs": {"type": "int", "low": 1, "high": 5}}}, r"'epochs' cannot be searched"),
    ({"method": "hyperband", "metric": "val_f1_macro"}, r"'val_f1_macro' is measured once, at the end"),
    ({"model_key": "rf", "space": None, "model_args": {}, "method": "hyperband"}, r"'rf' fits in one step"),
    ({"model_key": "svm", "space": None, "model_args": {}}, r"training options apply to deep models only; 'svm'"),
    ({"model_key": "nas_net", "space": None}, r"does not tune 'nas_net': its arguments are its architecture"),
    ({"model_key": "xgboost", "space": None}, r"unknown model_key 'xgboost'; HPO tunes cnn1d, .*, rf, svm, gbm"),
    ({"metric": "f1_score"}, r"metric must be one of val_accuracy, val_loss, val_f1_macro"),
])
def test_bad_campaign_is_refused_with_a_message_naming_the_problem(change, message):
    with pytest.raises(InvalidInput, match=message):
        parse_campaign(hpo_spec(**change))


@pytest.mark.parametrize("model_key", ["cnn1d", "resnet18", "cnn_lstm", "attention_cnn", "signal_transformer",
                                       "rf", "svm", "gbm"])
def test_every_model_key_has_a_default_space_its_model_accepts_at_every_bound(model_key):
    # Given a campaign that names only its model, when it is checked, then the default space is used and valid
    spec = check_campaign(parse_campaign({"model_key": model_key}))
    assert len(spec.space.params) >= 3 and spec.to_dict()["space"] == parse_campaign(spec.to_dict()).to_dict()["space"]
    assert spec.classical == (model_key in ("rf", "svm", "gbm"))
    assert all(p.target == "model" for p in spec.space.params) or not spec.classical


def test_a_bad_spec_is_refused_when_it_is_sent(app):
    from actors.hpo import run_hpo_campaign

    bad = hpo_spec(space={"lr": {"type": "float", "low": 0.1, "high": 0.01}})
    with pytest.raises(PayloadInvalid, match=r"low \(0.1\) is greater than high"):
        run_hpo_campaign.send(dataset_id="ds-any", spec=bad)
    with pytest.raises(PayloadInvalid, match=r"n_trials must be an integer"):
        run_hpo_campaign.send(dataset_id="ds-any", spec=hpo_spec(n_trials=0))


def test_parameters_go_to_the_model_or_to_training_by_name_or_by_declared_target():
    spec = check_campaign(parse_campaign(hpo_spec(space={
        "lr": {"type": "float", "low": 1e-3, "high": 1e-2},
        "width": {"type": "int", "low": 8, "high": 16, "step": 8},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "target": "model"},
    })))
    assert {p.name: p.target for p in spec.space.params} == {"dropout": "model", "lr": "training", "width": "model"}
    model, training = spec.trial_arguments({"lr": 0.005, "width": 16, "dropout": 0.1})
    assert model == {"width": 16, "depth": 2, "dropout": 0.1}
    assert training["lr"] == 0.005 and training["epochs"] == 2


def test_a_bound_the_model_or_training_refuses_is_named_before_any_trial():
    with pytest.raises(InvalidInput, match=r"'lr' = 20.0 is refused: training option 'lr' must be in"):
        check_campaign(parse_campaign(hpo_spec(space={"lr": {"type": "float", "low": 1e-3, "high": 20.0}})))
    with pytest.raises(InvalidInput, match=r"'colour' is neither an argument of model 'cnn1d'"):
        check_campaign(parse_campaign(hpo_spec(space={"colour": {"type": "categorical", "choices": ["red"]}})))
    with pytest.raises(InvalidInput, match=r"'lr' is not a model option"):
        check_campaign(parse_campaign(hpo_spec(space={"lr": {"type": "float", "low": 1e-3, "high": 1e-2,
                                                             "target": "model"}})))
    with pytest.raises(InvalidInput, match=r"HPO does not tune 'nas_net'"):
        check_campaign(parse_campaign(hpo_spec(model_key="nas_net")))


def test_each_method_uses_its_own_sampler_and_hyperband_prunes():
    import optuna

    from pipeline.hpo.study import make_pruner, make_sampler

    space = parse_campaign(hpo_spec()).space
    assert isinstance(make_sampler("bayesian", space, 0, 0), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", space, 0, 0), optuna.samplers.RandomSampler)
    grid_space = parse_campaign(hpo_spec(space={"kernel_size": {"type": "categorical", "choices": [3, 5]}})).space
    assert isinstance(make_sampler("grid", grid_space, 0, 0), optuna.samplers.GridSampler)
    assert isinstance(make_pruner("hyperband", 4), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("bayesian", 4), optuna.pruners.NopPruner)


def _ask_all(method: str, space, count: int, *, waves: int = 1) -> list[dict]:  # type: ignore[no-untyped-def]
    import optuna

    from pipeline.hpo.study import ask_trials, distributions, open_study

    storage = optuna.storages.InMemoryStorage()
    asked = []
    for _ in range(waves):  # each wave reopens the study with a fresh sampler, as a worker does
        study = open_study(storage, "s", direction="maximize", method=method, space=space, seed=0, epochs=2)
        for trial in ask_trials(study, distributions(space), count // waves):
            study.tell(trial.number, 0.5)
            asked.append(trial.params)
    return asked


def test_grid_visits_every_point_of_the_declared_space_once_across_waves():
    space = parse_campaign(hpo_spec(method="grid", space={
        "lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
        "kernel_size": {"type": "categorical", "choices": [3, 7]}})).space
    visited = _ask_all("grid", space, 6, waves=3)
    expected = {(lr, k) for lr, k in itertools.product([0.01, 0.02, 0.03], [3, 7])}
    assert {(round(p["lr"], 6), p["kernel_size"]) for p in visited} == expected


def test_random_waves_do_not_repeat_each_others_draws_and_the_same_seed_repeats_a_campaign():
    space = parse_campaign(hpo_spec()).space
    first = _ask_all("random", space, 4, waves=2)
    assert first[0] != first[2]  # wave 2's sampler is seeded past wave 1's draws
    assert first == _ask_all("random", space, 4, waves=2)
