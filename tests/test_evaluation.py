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


def test_scorecard_adds_average_precision_and_calibration_error_to_the_metrics():
    scores = evaluation.scorecard(LABELS, PROBABILITIES, CLASSES)
    basic = evaluation.metrics(LABELS, PROBABILITIES, CLASSES)
    assert {key: value for key, value in scores.items() if key in basic and key != "per_class"} == \
        {key: value for key, value in basic.items() if key != "per_class"}
    # Every class column ranks its own images first; the pooled (micro) ranking puts one
    # negative (the dog's 0.5 for cat) above one positive (its 0.4 for dog): AP = 5/6 + 1/6 * 6/7.
    assert all(scores["per_class"][name]["average_precision"] == 1.0 for name in CLASSES)
    assert scores["average_precision_macro"] == 1.0
    assert scores["average_precision_micro"] == round(5 / 6 + 1 / 7, 6)
    assert scores["per_class"]["dog"]["roc_auc"] == basic["per_class"]["dog"]["roc_auc"]
    assert scores["expected_calibration_error"] == evaluation.expected_calibration_error(LABELS, PROBABILITIES)
    json.dumps(scores, allow_nan=False)


# Two bins of confidence: 0.95 (4 images, 3 right) and 0.55 (2 images, 1 right).
CAL_LABELS = np.array([0, 0, 0, 1, 0, 1])
CAL_PROBABILITIES = np.array([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 2)


def test_reliability_bins_hold_accuracy_against_mean_confidence():
    assert evaluation.reliability(CAL_LABELS, CAL_PROBABILITIES) == [
        {"confidence": 0.55, "accuracy": 0.5, "images": 2},
        {"confidence": 0.95, "accuracy": 0.75, "images": 4},
    ]


def test_expected_calibration_error_weighs_each_bins_gap_by_its_images():
    ece = evaluation.expected_calibration_error(CAL_LABELS, CAL_PROBABILITIES)
    assert ece == pytest.approx((4 * (0.95 - 0.75) + 2 * (0.55 - 0.5)) / 6)
    # Always right at confidence 0.9333: the gap is 1/15 in the one bin.
    assert evaluation.expected_calibration_error(LABELS, PERFECT) == pytest.approx(1 / 15, abs=1e-6)
    sure_and_right = np.eye(3)[LABELS]
    assert evaluation.expected_calibration_error(LABELS, sure_and_right) == 0.0
    assert evaluation.reliability(LABELS, sure_and_right) == [{"confidence": 1.0, "accuracy": 1.0, "images": 6}]


def test_expected_calibration_error_is_finite_when_every_prediction_is_wrong():
    wrong = np.roll(PERFECT, 1, axis=1)
    assert evaluation.expected_calibration_error(LABELS, wrong) == pytest.approx(0.9 + 0.1 / 3, abs=1e-6)
    json.dumps(evaluation.reliability(LABELS, wrong), allow_nan=False)


@pytest.mark.parametrize("probabilities", [PROBABILITIES, PERFECT], ids=["one-error", "perfect"])
def test_pr_curves_are_finite_json_running_from_recall_zero_to_one(probabilities):
    curves = evaluation.pr_curves(LABELS, probabilities, CLASSES)
    assert set(curves) == {"class_0", "class_1", "class_2", "micro"}
    json.dumps(curves, allow_nan=False)
    for name, points in curves.items():
        assert all(0 <= p["recall"] <= 1 and 0 <= p["precision"] <= 1 for p in points), name
        recall = [p["recall"] for p in points]
        assert recall == sorted(recall) and recall[0] == 0 and recall[-1] == 1, name
    assert {p["curve"] for p in curves["class_1"]} == {"dog"}
    assert {p["curve"] for p in curves["micro"]} == {"micro-average"}


def test_pr_curve_of_a_perfect_ranking_keeps_precision_one_up_to_full_recall():
    # sklearn goes on past full recall down to the lowest score, where precision is the share of positives.
    curves = evaluation.pr_curves(LABELS, PERFECT, CLASSES)
    for name in ("class_0", "class_1", "class_2", "micro"):
        points = [(p["recall"], p["precision"]) for p in curves[name]]
        assert all(precision == 1.0 for recall, precision in points if recall < 1), name
        assert (1.0, 1.0) in points and points[-1] == (1.0, round(1 / 3, 6)), name
    one_error = [(p["recall"], p["precision"]) for p in evaluation.pr_curves(LABELS, PROBABILITIES, CLASSES)["micro"]]
    assert (1.0, 1.0) not in one_error


def test_long_pr_curves_are_thinned_to_sklearn_points_with_both_ends():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20000)
    scores = np.clip(labels * 0.2 + rng.random(20000) * 0.8, 0, 1)
    probabilities = np.stack([1 - scores, scores], axis=1)
    points = evaluation.pr_curves(labels, probabilities, ["no", "yes"])["class_1"]
    assert len(points) <= evaluation.PR_CURVE_POINTS
    assert (points[0]["recall"], points[0]["precision"]) == (0.0, 1.0)
    assert points[-1]["recall"] == 1.0 and points[-1]["precision"] == pytest.approx(labels.mean(), abs=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_class_without_test_images_has_no_pr_curve_and_no_average_precision():
    labels = np.array([0, 0, 1, 1])
    probabilities = PROBABILITIES[[0, 1, 2, 3]]
    scores = evaluation.scorecard(labels, probabilities, CLASSES)
    curves = evaluation.pr_curves(labels, probabilities, CLASSES)
    assert set(curves) == {"class_0", "class_1", "micro"}
    assert scores["per_class"]["bird"]["average_precision"] is None
    json.dumps([scores, curves], allow_nan=False)


def test_confused_pairs_are_the_largest_off_diagonal_cells_in_order():
    # actual -> predicted: cat->dog x3, bird->cat x2, dog->cat x2, bird->dog x1, and some right.
    pairs = [(0, 1)] * 3 + [(2, 0)] * 2 + [(1, 0)] * 2 + [(2, 1)] + [(0, 0), (1, 1), (2, 2)]
    labels = np.array([a for a, _ in pairs])
    probabilities = np.eye(3)[[p for _, p in pairs]]
    assert evaluation.confused_pairs(labels, probabilities, CLASSES, top=3) == [
        {"actual": "cat", "predicted": "dog", "count": 3, "fraction_of_actual": 0.75},
        {"actual": "dog", "predicted": "cat", "count": 2, "fraction_of_actual": round(2 / 3, 6)},  # ties: class order
        {"actual": "bird", "predicted": "cat", "count": 2, "fraction_of_actual": 0.5},
    ]
    assert len(evaluation.confused_pairs(labels, probabilities, CLASSES, top=10)) == 4  # no zero-count cells
    assert evaluation.confused_pairs(LABELS, PERFECT, CLASSES) == []


def test_confidently_wrong_lists_misclassified_images_most_confident_first():
    labels = np.array([0, 1, 1, 0, 2])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]])
    assert evaluation.confidently_wrong(labels, probabilities, 10).tolist() == [2, 3, 1]
    assert evaluation.confidently_wrong(labels, probabilities, 2).tolist() == [2, 3]
    assert evaluation.confidently_wrong(LABELS, PERFECT, 5).tolist() == []


def test_examples_pick_a_seeded_sample_the_misclassified_and_a_spread_for_heat_maps():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    probabilities = np.tile([[0.9, 0.1]], (10, 1))  # everything predicted 0: the odd indices are wrong
    pick = evaluation.examples(labels, probabilities, count=4, seed=3, heat_maps=2)
    assert list(pick["wrong"]) == [1, 3, 5, 7]
    assert len(pick["shown"]) == 4 and list(pick["shown"]) == sorted(pick["shown"])
    assert list(pick["shown"]) == list(evaluation.examples(labels, probabilities, 4, 3, 2)["shown"])  # seeded
    assert list(pick["explained"]) == [pick["shown"][0], pick["shown"][-1]]
    assert set(pick["confidently_wrong"]) <= {1, 3, 5, 7, 9}
