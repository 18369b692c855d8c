"""ROC from saved probabilities: known classifiers, averages, JSON safety, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.domain import CLASS_KEYS
from pipeline.errors import InvalidInput
from pipeline.evaluation.roc import roc_analysis

LABELS = np.repeat([0, 3, 7], 10)


def _present(result: dict) -> dict[str, float]:
    return {key: curve["auc"] for key, curve in result["classes"].items() if curve["auc"] is not None}


def test_roc_of_a_perfect_classifier_gives_auc_1_for_every_class():
    result = roc_analysis(np.eye(len(CLASS_KEYS))[LABELS], LABELS, CLASS_KEYS)
    assert _present(result) == {CLASS_KEYS[0]: 1.0, CLASS_KEYS[3]: 1.0, CLASS_KEYS[7]: 1.0}
    assert result["micro_auc"] == 1.0 and result["macro_auc"] == 1.0
    assert result["macro"]["auc"] == pytest.approx(1.0)


def test_roc_of_a_constant_classifier_gives_auc_one_half():
    constant = np.full((LABELS.size, len(CLASS_KEYS)), 1 / len(CLASS_KEYS))
    result = roc_analysis(constant, LABELS, CLASS_KEYS)
    assert set(_present(result).values()) == {0.5}
    assert result["micro_auc"] == pytest.approx(0.5) and result["macro_auc"] == pytest.approx(0.5)


def test_classes_absent_from_the_labels_have_no_curve_and_are_not_averaged():
    rng = np.random.default_rng(0)
    result = roc_analysis(rng.dirichlet(np.ones(len(CLASS_KEYS)), LABELS.size), LABELS, CLASS_KEYS)
    assert list(result["classes"]) == [CLASS_KEYS[0], CLASS_KEYS[3], CLASS_KEYS[7]]
    assert len(result["skipped"]) == len(CLASS_KEYS) - 3 and not set(result["skipped"]) & set(result["classes"])
    assert result["macro_auc"] == pytest.approx(np.mean(list(_present(result).values())))


def test_absent_classes_scored_high_do_not_change_the_micro_average():
    # Given a model that puts mass on a class the data lacks, the micro average only pools present classes.
    probabilities = np.eye(len(CLASS_KEYS))[LABELS] * 0.5
    probabilities[:, 5] = 0.5
    result = roc_analysis(probabilities, LABELS, CLASS_KEYS)
    assert result["micro_auc"] == 1.0 and CLASS_KEYS[5] in result["skipped"]


def test_roc_result_is_plain_json_with_curves_from_0_to_1():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 500)
    probabilities = rng.dirichlet(np.ones(4), 500)
    result = roc_analysis(probabilities, labels, CLASS_KEYS[:4], max_points=50)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    for curve in [*result["classes"].values(), result["micro"], result["macro"]]:
        assert len(curve["fpr"]) <= 50
        assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0 and curve["fpr"][-1] == 1.0


@pytest.mark.parametrize(
    ("probabilities", "labels", "match"),
    [
        (np.ones((4, 3)), np.array([0, 1, 2, 0]), "probabilities must be"),
        (np.ones((4, 11)), np.array([0, 1]), "labels must have shape"),
        (np.ones((4, 11)), np.array([0, 0, 0, 0]), "at least two classes"),
        (np.full((2, 11), np.nan), np.array([0, 1]), "NaN"),
        (np.ones((2, 11)), np.array([0, 11]), r"labels must be integers in \[0, 11\)"),
    ],
)
def test_roc_refuses_bad_input_with_a_clear_message(probabilities, labels, match):
    with pytest.raises(InvalidInput, match=match):
        roc_analysis(probabilities, labels, CLASS_KEYS)
