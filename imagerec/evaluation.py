"""Test-split metrics and the data behind the plots, all computed by scikit-learn."""
import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, log_loss,
                             roc_auc_score, roc_curve)


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
    for i, name in enumerate(classes):
        if not _present(onehot)[i]:
            continue
        fpr, tpr, _ = roc_curve(onehot[:, i], probabilities[:, i])
        curves[f"class_{i}"] = _points(fpr, tpr, name)
        interpolated.append(np.interp(grid, fpr, tpr))
    fpr, tpr, _ = roc_curve(onehot.ravel(), probabilities.ravel())
    curves["micro"] = _points(fpr, tpr, "micro-average")
    macro = np.mean(interpolated, axis=0)
    macro[0] = 0.0
    curves["macro"] = _points(grid, macro, "macro-average")
    return curves


def _points(fpr, tpr, curve: str) -> list[dict]:
    return [{"fpr": round(float(x), 6), "tpr": round(float(y), 6), "curve": curve} for x, y in zip(fpr, tpr)]
