"""evaluation: metrics on small known examples, and plot data that is valid strict JSON."""
import json
import math

import numpy as np
import pytest

from imagerec import evaluation

CLASSES = ["cat", "dog", "bird"]
LABELS = np.array([0, 0, 1, 1, 2, 2])
# Row 3 (a dog) is predicted as a cat; every other image is right.
PROBABILITIES = np.array([
    [0.8, 0.1, 0.1],
    [0.6, 0.3, 0.1],
    [0.2, 0.7, 0.1],
    [0.5, 0.4, 0.1],
    [0.1, 0.2, 0.7],
    [0.2, 0.1, 0.7],
])
PERFECT = np.eye(3)[LABELS] * 0.9 + 0.1 / 3


def test_metrics_on_a_known_example():
    scores = evaluation.metrics(LABELS, PROBABILITIES, CLASSES)
    assert scores["accuracy"] == round(5 / 6, 6)
    assert scores["test_images"] == 6
    assert scores["loss"] == pytest.approx(-np.mean(np.log(PROBABILITIES[np.arange(6), LABELS])), abs=1e-6)
    assert list(scores["per_class"]) == CLASSES
    assert scores["per_class"]["cat"] == {"precision": round(2 / 3, 6), "recall": 1.0, "f1-score": 0.8, "roc_auc": 1.0}
    assert scores["per_class"]["dog"]["recall"] == 0.5 and scores["per_class"]["dog"]["precision"] == 1.0


def test_perfect_probabilities_give_auc_of_one():
    scores = evaluation.metrics(LABELS, PERFECT, CLASSES)
    assert scores["accuracy"] == 1.0
    assert scores["roc_auc_micro"] == scores["roc_auc_macro"] == 1.0
    assert all(per_class["roc_auc"] == 1.0 for per_class in scores["per_class"].values())


def test_metrics_work_for_two_classes():
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    scores = evaluation.metrics(labels, probabilities, ["cats", "dogs"])
    assert scores["accuracy"] == 0.5
    assert scores["per_class"]["dogs"]["roc_auc"] == 0.75  # 3 of the 4 (dog, cat) pairs are ordered right
    json.dumps(scores, allow_nan=False)


@pytest.mark.parametrize("probabilities", [PROBABILITIES, PERFECT], ids=["one-error", "perfect"])
def test_roc_curves_are_finite_json_within_the_unit_square(probabilities):
    curves = evaluation.roc_curves(LABELS, probabilities, CLASSES)
    assert set(curves) == {"class_0", "class_1", "class_2", "micro", "macro"}
    json.dumps(curves, allow_nan=False)
    for name, points in curves.items():
        assert all(0 <= p["fpr"] <= 1 and 0 <= p["tpr"] <= 1 for p in points), name
        assert (points[0]["fpr"], points[0]["tpr"]) == (0, 0) and (points[-1]["fpr"], points[-1]["tpr"]) == (1, 1)
    assert {p["curve"] for p in curves["class_1"]} == {"dog"}
    assert {p["curve"] for p in curves["macro"]} == {"macro-average"}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_class_without_test_images_still_gives_finite_json():
    labels = np.array([0, 0, 1, 1])
    probabilities = PROBABILITIES[[0, 1, 2, 3]]
    scores = evaluation.metrics(labels, probabilities, CLASSES)
    curves = evaluation.roc_curves(labels, probabilities, CLASSES)
    assert all(math.isfinite(p["tpr"]) for points in curves.values() for p in points)
    json.dumps([scores, curves], allow_nan=False)


def test_confusion_rows_use_class_names():
    rows = evaluation.confusion_rows(LABELS, PROBABILITIES, CLASSES)
    assert list(rows.columns) == ["actual", "predicted"]
    assert rows["actual"].tolist() == ["cat", "cat", "dog", "dog", "bird", "bird"]
    assert rows["predicted"].tolist() == ["cat", "cat", "dog", "cat", "bird", "bird"]


def test_confusion_matrix_counts_actual_rows_by_predicted_columns():
    assert evaluation.confusion(LABELS, PROBABILITIES, CLASSES).tolist() == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
