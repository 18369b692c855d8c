"""NAS candidates are real networks: counts match the module, duplicates are found, costs are measured."""

from __future__ import annotations

import random

import pytest

from pipeline.errors import InvalidInput
from pipeline.nas import (
    arch_hash,
    canonical_arch,
    pareto_front,
    parse_nas_campaign,
    parse_nas_space,
    sample_arch,
)

ARCH_A = {"stem": 8, "layers": [["conv5", 16], ["maxpool", None], ["sepconv3", 16]]}
ARCH_B = {"stem": 8, "layers": [["conv7", 32], ["avgpool", None]]}


def _parameters_by_hand(arch: dict) -> int:
    """Count the weights of an architecture from its definition alone (no torch module)."""
    from pipeline.domain import NUM_CLASSES

    stem = arch["stem"]
    total, channels = 64 * stem + 2 * stem, stem  # stem conv (no bias) + batch norm
    for op, width in arch["layers"]:
        if op.startswith("conv"):
            total += channels * width * int(op[-1]) + 2 * width
            channels = width
        elif op.startswith("sepconv"):
            total += channels * int(op[-1]) + channels * width + 2 * width
            channels = width
    return total + channels * NUM_CLASSES + NUM_CLASSES


@pytest.mark.parametrize("arch", [ARCH_A, ARCH_B])
def test_a_candidate_is_a_real_module_whose_parameter_count_matches_its_architecture(arch):
    import torch

    from pipeline.models import count_parameters
    from pipeline.nas.model import build_candidate

    model = build_candidate(arch)
    assert count_parameters(model) == _parameters_by_hand(arch)
    assert model(torch.randn(2, 1, 4096)).shape == (2, 11)


def test_different_architectures_give_different_counts_and_costs():
    from pipeline.nas.model import build_candidate
    from pipeline.nas.profile import profile_model

    a, b = profile_model(build_candidate(ARCH_A), length=4096), profile_model(build_candidate(ARCH_B), length=4096)
    assert a.parameter_count != b.parameter_count and a.macs != b.macs
    assert a.flops == 2 * a.macs and a.latency_ms > 0 and a.size_bytes >= 4 * a.parameter_count


def test_macs_counted_by_hooks_match_the_layer_arithmetic():
    from pipeline.models.profile import count_macs
    from pipeline.nas.model import build_candidate

    arch = {"stem": 4, "layers": [["conv3", 8]]}
    # length 4096: stem conv stride 8 -> 512 outputs, pool 4 -> 128; conv3 keeps 128; head 8 -> 11.
    expected = 512 * 4 * 1 * 64 + 128 * 8 * 4 * 3 + 8 * 11
    assert count_macs(build_candidate(arch), 4096) == expected


def test_equal_networks_share_a_hash_and_skip_layers_are_dropped():
    with_skip = {"stem": 8, "layers": [["conv5", 16], ["skip", 32], ["maxpool", 64], ["sepconv3", 16]]}
    assert canonical_arch(with_skip) == ARCH_A
    assert arch_hash(with_skip) == arch_hash(ARCH_A) != arch_hash(ARCH_B)


def test_bad_nas_spaces_and_architectures_are_refused():
    with pytest.raises(InvalidInput, match=r"min_layers \(3\) is greater than max_layers \(2\)"):
        parse_nas_space({"min_layers": 3, "max_layers": 2})
    with pytest.raises(InvalidInput, match=r"unknown operation\(s\) conv9"):
        parse_nas_space({"ops": ["conv3", "conv9"]})
    with pytest.raises(InvalidInput, match=r"needs at least one convolution"):
        parse_nas_space({"ops": ["maxpool", "skip"]})
    with pytest.raises(InvalidInput, match=r"'widths' must be a non-empty list"):
        parse_nas_space({"widths": []})
    with pytest.raises(InvalidInput, match=r"n_candidates must be an integer"):
        parse_nas_campaign({"n_candidates": 0})
    with pytest.raises(InvalidInput, match=r"method must be one of random, tpe"):
        parse_nas_campaign({"method": "evolution"})
    with pytest.raises(InvalidInput, match=r"conv3 needs a width"):
        canonical_arch({"stem": 8, "layers": [["conv3", None]]})


def test_random_sampling_is_seeded_and_stays_in_the_space():
    space = parse_nas_space({"min_layers": 1, "max_layers": 3, "ops": ["conv3", "sepconv5", "maxpool"], "widths": [4, 8]})
    draws = [sample_arch(space, random.Random(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    for arch in (sample_arch(space, random.Random(seed)) for seed in range(20)):
        assert len(arch["layers"]) <= 3
        assert all(op in ("conv3", "sepconv5", "maxpool") for op, _ in arch["layers"])


def test_pareto_front_keeps_only_candidates_nothing_beats_on_both_accuracy_and_size():
    candidates = [
        {"arch_hash": "a", "val_accuracy": 0.9, "parameter_count": 1000},
        {"arch_hash": "b", "val_accuracy": 0.8, "parameter_count": 500},
        {"arch_hash": "c", "val_accuracy": 0.7, "parameter_count": 800},  # beaten by b
        {"arch_hash": "d", "val_accuracy": 0.9, "parameter_count": 1200},  # beaten by a
    ]
    assert [c["arch_hash"] for c in pareto_front(candidates)] == ["b", "a"]


def test_a_short_real_training_reports_validation_scores_and_the_module_cost(hpo_dataset):
    from pipeline.models import count_parameters
    from pipeline.nas.model import build_candidate
    from pipeline.nas.train import train_candidate
    from pipeline.training import load_training_data

    data = load_training_data(hpo_dataset["path"])
    result = train_candidate(ARCH_A, {"epochs": 1, "batch_size": 8, "seed": 0}, data)
    assert result.epochs_run == 1 and 0.0 <= result.val_accuracy <= 1.0 and result.val_loss > 0
    assert result.parameter_count == count_parameters(build_candidate(ARCH_A))


def _nas_campaign(database, campaign_id: str, dataset_id: str) -> None:  # type: ignore[no-untyped-def]
    from actors.store.campaigns import create_campaign

    create_campaign(database, campaign_id, "job-1", kind="nas", name="", dataset_id=dataset_id,
                    study_name=campaign_id, method="random", space={}, spec={}, n_trials=3, parallelism=1,
                    metric="val_accuracy", direction="maximize")


def test_the_same_architecture_is_claimed_once_per_campaign(database, hpo_dataset):
    from actors.store.campaigns import claim_candidate, record_trials

    _nas_campaign(database, "nas-claims", hpo_dataset["dataset_id"])
    key = arch_hash(ARCH_A)
    assert claim_candidate(database, "nas-claims", key, ARCH_A, 0)[0] is True
    claimed, existing = claim_candidate(database, "nas-claims", key, ARCH_A, 1)
    assert claimed is False and existing["trial_number"] == 0
    # Once the trial that held it was cancelled, a later trial (a resume) takes it over.
    record_trials(database, "nas-claims", {0: {"state": "cancelled"}})
    claimed, taken = claim_candidate(database, "nas-claims", key, ARCH_A, 2)
    assert claimed is True and taken["trial_number"] == 2


def test_nas_net_builds_exactly_the_candidate_from_the_architecture_as_model_arguments():
    from pipeline.models import build_model, count_parameters, is_deep
    from pipeline.nas.model import build_candidate

    model = build_model("nas_net", {"num_classes": 3, **ARCH_A})
    assert is_deep("nas_net") and model.arch == ARCH_A
    assert count_parameters(model) == count_parameters(build_candidate(ARCH_A, 3))


@pytest.mark.parametrize(("args", "message"), [
    ({}, r"model 'nas_net' needs argument\(s\) stem, layers \(the architecture a NAS campaign recorded\)"),
    ({"stem": 8}, r"needs argument\(s\) layers"),
    ({"stem": "8", "layers": []}, r"argument 'stem' of model 'nas_net' must be int"),
    ({"stem": 8, "layers": "conv3"}, r"argument 'layers' of model 'nas_net' must be list"),
    ({"stem": 8, "layers": [["conv9", 8]]}, r"invalid arguments for model 'nas_net': .*a layer is \[operation, width\]"),
    ({"stem": 8, "layers": [["conv3", 0]]}, r"conv3 needs a width in \[1, 1024\]"),
    ({"stem": 8, "layers": [], "arch": "{}"}, r"unknown argument\(s\) arch for model 'nas_net'"),
])
def test_nas_net_without_a_valid_architecture_is_refused_naming_the_problem(args, message):
    from pipeline.models import build_model

    with pytest.raises(InvalidInput, match=message):
        build_model("nas_net", args)


def test_train_deep_trains_a_nas_net_and_its_checkpoint_loads_back_as_the_same_network(hpo_dataset, tmp_path):
    import torch

    from pipeline.models import count_parameters
    from pipeline.nas.model import build_candidate
    from pipeline.training import load_training_data
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.training.loop import train_deep

    data = load_training_data(hpo_dataset["path"])
    args = {"num_classes": len(data.class_keys), **ARCH_B}
    result = train_deep("nas_net", args, {"epochs": 2, "batch_size": 8, "scheduler": "none", "seed": 0}, data, tmp_path)
    expected = count_parameters(build_candidate(ARCH_B, len(data.class_keys)))
    assert result.epochs_run == 2 and result.parameter_count == expected
    model, meta = load_checkpoint(result.model_path)
    assert (meta["model_key"], meta["model_args"]) == ("nas_net", {**args, "in_channels": 1})
    assert model.arch == ARCH_B and count_parameters(model) == expected
    assert model(torch.randn(2, 1, 2048)).shape == (2, len(data.class_keys))


def test_a_trained_candidate_taken_over_after_a_crash_keeps_its_run_and_is_not_trained_again(database, hpo_dataset):
    from actors.store.campaigns import (
        claim_candidate,
        record_trials,
        start_candidate,
        update_candidate,
    )

    _nas_campaign(database, "nas-kept", hpo_dataset["dataset_id"])
    key = arch_hash(ARCH_B)
    claim_candidate(database, "nas-kept", key, ARCH_B, 0)
    assert start_candidate(database, "nas-kept", key, "job-a")["status"] == "running"
    update_candidate(database, "nas-kept", key, status="complete", metrics={"val_accuracy": 0.5})
    # Its job died before telling the study: a resume settles trial 0 cancelled and asks the architecture again.
    record_trials(database, "nas-kept", {0: {"state": "cancelled"}})
    claimed, candidate = claim_candidate(database, "nas-kept", key, ARCH_B, 1)
    assert claimed is True and (candidate["trial_number"], candidate["status"]) == (1, "complete")
    again = start_candidate(database, "nas-kept", key, "job-b")
    assert (again["status"], again["job_id"], again["metrics"]) == ("complete", "job-a", {"val_accuracy": 0.5})
