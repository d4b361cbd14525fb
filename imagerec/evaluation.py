"""Test-split metrics and the data behind the plots, all computed by scikit-learn."""
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, classification_report, confusion_matrix,
                             log_loss, precision_recall_curve, roc_auc_score, roc_curve)

PR_CURVE_POINTS = 500  # at most this many points per precision-recall curve in the plot data
CALIBRATION_BINS = 15  # equal-width bins of the predicted class's probability, for ECE and the reliability diagram


def metrics(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """accuracy, cross-entropy loss, ROC AUC (micro and macro one-vs-rest), per-class P/R/F1."""
    predicted = probabilities.argmax(axis=1)
    onehot = np.eye(len(classes))[labels]
    present = _present(onehot)
    report = classification_report(labels, predicted, labels=range(len(classes)), target_names=classes,
                                   output_dict=True, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 6),
        "loss": round(float(log_loss(labels, probabilities, labels=range(len(classes)))), 6),
        "roc_auc_micro": round(float(roc_auc_score(onehot, probabilities, average="micro")), 6),
        # Over the classes the test split has; a class without test images has no ROC curve.
        "roc_auc_macro": round(float(roc_auc_score(onehot[:, present], probabilities[:, present], average="macro")), 6),
        "test_images": int(len(labels)),
        "per_class": {
            name: {
                **{key: round(float(report[name][key]), 6) for key in ("precision", "recall", "f1-score")},
                "roc_auc": round(float(roc_auc_score(onehot[:, i], probabilities[:, i])), 6) if present[i] else None,
            }
            for i, name in enumerate(classes)
        },
    }


def _present(onehot: np.ndarray) -> np.ndarray:
    """Which classes have both positives and negatives in the test split (an AUC exists)."""
    positives = onehot.sum(axis=0)
    return (positives > 0) & (positives < len(onehot))


def text_report(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> str:
    return classification_report(labels, probabilities.argmax(axis=1), labels=range(len(classes)),
                                 target_names=classes, digits=4, zero_division=0)


def confusion(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
    return confusion_matrix(labels, probabilities.argmax(axis=1), labels=range(len(classes)))


def confusion_rows(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One (actual, predicted) row per test image: the input of DVC's `confusion` template."""
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame({"actual": names[labels], "predicted": names[probabilities.argmax(axis=1)]})


def roc_curves(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, list[dict]]:
    """One-vs-rest ROC per class, plus micro and macro averages, as lists of {fpr, tpr}.

    sklearn's first threshold is +inf (a point that classifies nothing as positive); it is not
    written, since Vega-Lite cannot read Infinity. Only fpr/tpr are kept.
    """
    onehot = np.eye(len(classes))[labels]
    curves = {}
    grid = np.linspace(0, 1, 201)
    interpolated = []
    for i in np.flatnonzero(_present(onehot)):
        fpr, tpr, _ = roc_curve(onehot[:, i], probabilities[:, i])
        curves[f"class_{i}"] = _points(fpr, tpr, classes[i])
        interpolated.append(np.interp(grid, fpr, tpr))
    fpr, tpr, _ = roc_curve(onehot.ravel(), probabilities.ravel())
    curves["micro"] = _points(fpr, tpr, "micro-average")
    macro = np.mean(interpolated, axis=0)
    macro[0] = 0.0
    curves["macro"] = _points(grid, macro, "macro-average")
    return curves


def _points(fpr, tpr, curve: str) -> list[dict]:
    return [{"fpr": round(float(x), 6), "tpr": round(float(y), 6), "curve": curve} for x, y in zip(fpr, tpr)]


def scorecard(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Everything the metrics JSON holds: `metrics`, plus average precision (per class, micro and
    macro over the classes the test split has) and the expected calibration error."""
    scores = metrics(labels, probabilities, classes)
    precision = average_precision(labels, probabilities, classes)
    per_class = scores.pop("per_class")
    for name in classes:
        per_class[name]["average_precision"] = precision["per_class"][name]
    return {
        **scores,
        "average_precision_micro": precision["micro"],
        "average_precision_macro": precision["macro"],
        "expected_calibration_error": expected_calibration_error(labels, probabilities),
        "per_class": per_class,
    }


def average_precision(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Average precision (the area under the one-vs-rest precision-recall step curve):
    {"per_class": {name: AP or None}, "micro": AP, "macro": AP}. None: no test image of that class."""
    onehot = np.eye(len(classes))[labels]
    present = _present(onehot)
    return {
        "per_class": {
            name: round(float(average_precision_score(onehot[:, i], probabilities[:, i])), 6) if present[i] else None
            for i, name in enumerate(classes)
        },
        "micro": round(float(average_precision_score(onehot, probabilities, average="micro")), 6),
        "macro": round(float(average_precision_score(onehot[:, present], probabilities[:, present],
                                                     average="macro")), 6),
    }


def pr_curves(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, list[dict]]:
    """One-vs-rest precision-recall curve per class, plus the micro-average (every image and
    class as one binary decision), as lists of {recall, precision, curve} in increasing recall.

    sklearn's `drop_intermediate` leaves out the points a plotted curve does not need; a curve
    still longer than `PR_CURVE_POINTS` keeps that many of sklearn's points, evenly spaced along
    it, first and last included (no point is made up), so the files stay small enough for git.
    """
    onehot = np.eye(len(classes))[labels]
    curves = {}
    for i in np.flatnonzero(_present(onehot)):
        precision, recall, _ = precision_recall_curve(onehot[:, i], probabilities[:, i], drop_intermediate=True)
        curves[f"class_{i}"] = _pr_points(recall, precision, classes[i])
    precision, recall, _ = precision_recall_curve(onehot.ravel(), probabilities.ravel(), drop_intermediate=True)
    curves["micro"] = _pr_points(recall, precision, "micro-average")
    return curves


def _pr_points(recall, precision, curve: str) -> list[dict]:
    # sklearn returns decreasing recall, ending at its (recall 0, precision 1) point.
    keep = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), PR_CURVE_POINTS)).round().astype(int))
    return [{"recall": round(float(r), 6), "precision": round(float(p), 6), "curve": curve}
            for r, p in zip(recall[keep][::-1], precision[keep][::-1])]


def _reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int):
    """Per non-empty equal-width bin of the predicted class's probability: (accuracy, mean
    confidence, images). sklearn's calibration_curve gives the first two; the counts use its binning."""
    confidence = np.clip(probabilities.max(axis=1), 0.0, 1.0)
    correct = (probabilities.argmax(axis=1) == labels).astype(int)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence), minlength=bins)
    counts = counts[counts > 0]
    assert len(counts) == len(accuracy), "bin counts do not line up with sklearn's calibration_curve"
    return accuracy, mean_confidence, counts


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """The reliability diagram's data: per non-empty bin {confidence, accuracy, images}, where
    confidence is the mean probability of the predicted class and accuracy the share that is right."""
    accuracy, confidence, counts = _reliability_bins(labels, probabilities, bins)
    return [{"confidence": round(float(c), 6), "accuracy": round(float(a), 6), "images": int(n)}
            for c, a, n in zip(confidence, accuracy, counts)]


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the gap |accuracy - mean confidence| of each bin, weighted by the bin's share of images."""
    accuracy, confidence, counts = _reliability_bins(labels, probabilities, bins)
    return round(float(np.sum(counts * np.abs(accuracy - confidence)) / counts.sum()), 6)


def confused_pairs(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], top: int = 5) -> list[dict]:
    """The `top` largest off-diagonal confusion-matrix cells (ties by class order), non-zero only:
    [{actual, predicted, count, fraction_of_actual}]."""
    matrix = confusion(labels, probabilities, classes)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    actual, predicted = np.nonzero(off)
    order = np.lexsort((predicted, actual, -off[actual, predicted]))[:top]
    return [{"actual": classes[a], "predicted": classes[p], "count": int(off[a, p]),
             "fraction_of_actual": round(float(off[a, p] / matrix[a].sum()), 6)}
            for a, p in zip(actual[order], predicted[order])]


def confidently_wrong(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` misclassified images, the most confident (highest predicted probability) first."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    return wrong[np.argsort(-probabilities[wrong].max(axis=1), kind="stable")][:count]


def examples(labels: np.ndarray, probabilities: np.ndarray, count: int, seed: int, heat_maps: int) -> dict[str, np.ndarray]:
    """Which test images the figures show, as indices: a seeded sample ("shown"), the first
    misclassified ("wrong"), the most confidently wrong, and `heat_maps` of the sample spread
    over it ("explained", for Grad-CAM)."""
    from .datasets import seeded_sample

    shown = seeded_sample(len(labels), count, seed)
    return {
        "shown": shown,
        "wrong": np.flatnonzero(probabilities.argmax(axis=1) != labels)[:count],
        "confidently_wrong": confidently_wrong(labels, probabilities, count),
        "explained": shown[np.linspace(0, len(shown) - 1, min(heat_maps, len(shown))).astype(int)],
    }
