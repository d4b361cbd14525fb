"""Matplotlib figures written as PNGs: dataset exploration, augmentation preview, evaluation."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _image_grid(images, titles, path: Path, ncols: int, colors=None, suptitle: str | None = None) -> None:
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.ravel(), images)):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(titles[i], fontsize=7, color=colors[i] if colors else "black")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    _save(fig, path)


def samples_per_class(images, labels, classes, path: Path, per_class: int = 8) -> None:
    """A grid with one row per class (at most 10 rows) of the first training images."""
    shown, titles = [], []
    for i, name in enumerate(classes[:10]):
        for image in images[np.flatnonzero(labels == i)[:per_class]]:
            shown.append(image)
            titles.append(name)
    _image_grid(shown, titles, path, ncols=per_class, suptitle="training samples per class")


def class_balance(counts: dict[str, dict[str, int]], path: Path) -> None:
    """Grouped bars: images per class in each split."""
    classes = list(next(iter(counts.values())))
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(classes) + 2), 3.5))
    width = 0.8 / len(counts)
    for k, (split, per_class) in enumerate(counts.items()):
        ax.bar(np.arange(len(classes)) + k * width, [per_class[c] for c in classes], width, label=split)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("images")
    ax.set_title("class balance per split")
    ax.legend()
    _save(fig, path)


def augmentation_preview(grid: np.ndarray, path: Path) -> None:
    """Rows of (original, augmented, augmented, ...)."""
    rows, cols = grid.shape[:2]
    titles = (["original"] + ["augmented"] * (cols - 1)) * rows
    _image_grid(list(grid.reshape(-1, *grid.shape[2:])), titles, path, ncols=cols, suptitle="augmentation preview")


def confusion_matrix(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(classes) + 2),) * 2)
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, colorbar=False, xticks_rotation=45)
    ax.set_title("confusion matrix (test split)")
    _save(fig, path)


def roc(curves: dict[str, list[dict]], aucs: dict[str, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for key, points in curves.items():
        averaged = key in ("micro", "macro")
        label = f"{points[0]['curve']} (AUC {aucs[key]:.4f})"
        ax.plot([p["fpr"] for p in points], [p["tpr"] for p in points], label=label,
                linewidth=2 if averaged else 1, linestyle="--" if averaged else "-")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one-vs-rest (test split)")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def predictions(images, labels, probabilities, classes, path: Path, title: str, ncols: int = 8) -> None:
    """Images titled `predicted (p)`, green when right and red when wrong (with the truth)."""
    predicted = probabilities.argmax(axis=1)
    titles, colors = [], []
    for label, guess, probs in zip(labels, predicted, probabilities):
        right = label == guess
        titles.append(f"{classes[guess]} ({probs[guess]:.2f})" + ("" if right else f"\ntrue: {classes[label]}"))
        colors.append("green" if right else "red")
    _image_grid(list(images), titles, path, ncols=min(ncols, max(1, len(images))), colors=colors, suptitle=title)


def precision_recall(curves: dict[str, list[dict]], average_precisions: dict[str, float], path: Path) -> None:
    """One-vs-rest precision-recall curves, labelled with their average precision (AP). Drawn as
    steps the way AP sums them: the precision at a point holds from the previous recall up to its own."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for key, points in curves.items():
        averaged = key == "micro"
        label = f"{points[0]['curve']} (AP {average_precisions[key]:.4f})"
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points], label=label,
                linewidth=2 if averaged else 1, linestyle="--" if averaged else "-", drawstyle="steps-pre")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall, one-vs-rest (test split)")
    ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)


def reliability(rows: list[dict], bins: int, calibration_error: float, path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin (the diagonal is perfect
    calibration), and below it how many test images each bin holds."""
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = 1 / bins
    # A bin k holds confidences in (k/bins, (k+1)/bins] (sklearn's binning); its mean lies there too.
    index = np.ceil(np.array([r["confidence"] for r in rows]) * bins - 1e-9) - 1
    centres = (index.clip(0, bins - 1) + 0.5) * width
    ax.bar(centres, [r["accuracy"] for r in rows], width=width, edgecolor="black", linewidth=0.5, label="accuracy")
    ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", color="black", markersize=3,
            label="accuracy at mean confidence")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (test split), ECE {calibration_error:.4f}")
    ax.legend(fontsize=7, loc="upper left")
    count_ax.bar(centres, [r["images"] for r in rows], width=width, color="grey", edgecolor="black", linewidth=0.5)
    count_ax.set_yscale("log")
    count_ax.set_xlabel(f"confidence of the predicted class ({bins} bins)")
    count_ax.set_ylabel("images")
    _save(fig, path)


def gradcam(images, heatmaps, labels, probabilities, classes, path: Path, title: str) -> None:
    """Each image, titled `predicted (p)` (green when right, red with the truth when wrong),
    above the same image with its heat map (0 blue .. 1 red) overlaid."""
    n = len(images)
    fig, axes = plt.subplots(2, max(1, n), figsize=(1.6 * max(1, n), 3.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    predicted = probabilities.argmax(axis=1)
    for k in range(n):
        gray = images[k].shape[-1] == 1
        for ax in axes[:, k]:
            ax.imshow(images[k].squeeze(), cmap="gray" if gray else None, vmin=0, vmax=255)
        axes[1, k].imshow(heatmaps[k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        guess, right = predicted[k], predicted[k] == labels[k]
        caption = f"{classes[guess]} ({probabilities[k, guess]:.2f})" + ("" if right else f"\ntrue: {classes[labels[k]]}")
        axes[0, k].set_title(caption, fontsize=7, color="green" if right else "red")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
