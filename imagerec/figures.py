"""Matplotlib figures written as PNGs, for what DVC's plot templates cannot draw: grids of images
(samples, augmentation, predictions, Grad-CAM) and the class balance. ROC, precision-recall,
reliability and confusion are plot data (evaluate writes them), drawn by DVC and by the page."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def predictions(images, labels, probabilities, classes, path: Path, title: str, ncols: int = 8) -> None:
    """Images titled `predicted (p)`, green when right and red when wrong (with the truth)."""
    predicted = probabilities.argmax(axis=1)
    titles, colors = [], []
    for label, guess, probs in zip(labels, predicted, probabilities):
        right = label == guess
        titles.append(f"{classes[guess]} ({probs[guess]:.2f})" + ("" if right else f"\ntrue: {classes[label]}"))
        colors.append("green" if right else "red")
    _image_grid(list(images), titles, path, ncols=min(ncols, max(1, len(images))), colors=colors, suptitle=title)


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
