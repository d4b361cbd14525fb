"""evaluate: score the trained model once on the test split; write metrics, plot data, figures."""
import argparse
from pathlib import Path

import numpy as np

from imagerec import datasets, evaluation, figures, models, params, training
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, atomic_file, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("metrics_file", type=Path, help="output: metrics JSON")
    parser.add_argument("plots_dir", type=Path, help="output: ROC and confusion data, report, PNGs")
    args = parser.parse_args()
    p = params.load(args.dataset)

    test = datasets.load(args.prepared_dir, splits=["test"]).splits["test"]
    model, card = models.load(args.model_dir)
    training.check_input_shape(model, test.images.shape[1:])
    classes = card["classes"]
    probabilities = training.predict(model, test.images, p.evaluate.batch_size)
    labels = test.labels

    scores = evaluation.metrics(labels, probabilities, classes)
    curves = evaluation.roc_curves(labels, probabilities, classes)
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)[: p.evaluate.samples_shown]
    rng = np.random.default_rng(p.seed)
    shown = np.sort(rng.choice(len(labels), size=min(p.evaluate.samples_shown, len(labels)), replace=False))
    with atomic_dir(args.plots_dir) as out:
        (out / "roc").mkdir()
        for name, points in curves.items():
            write_json(out / "roc" / f"{name}.json", points)
        evaluation.confusion_rows(labels, probabilities, classes).to_csv(out / "confusion.csv", index=False)
        with atomic_file(out / "classification_report.txt") as f:
            f.write(evaluation.text_report(labels, probabilities, classes))
        aucs = {f"class_{i}": scores["per_class"][c]["roc_auc"] for i, c in enumerate(classes) if f"class_{i}" in curves}
        aucs.update(micro=scores["roc_auc_micro"], macro=scores["roc_auc_macro"])
        figures.roc(curves, aucs, out / "roc.png")
        figures.confusion_matrix(evaluation.confusion(labels, probabilities, classes), classes, out / "confusion_matrix.png")
        figures.predictions(test.images[shown], labels[shown], probabilities[shown], classes,
                            out / "predictions.png", "sample test predictions")
        figures.predictions(test.images[wrong], labels[wrong], probabilities[wrong], classes,
                            out / "misclassified.png", f"misclassified test images ({len(wrong)} shown)")
    write_json(args.metrics_file, scores)
    print(f"{args.dataset}: test accuracy {scores['accuracy']:.4f}, ROC AUC macro {scores['roc_auc_macro']:.4f}")


if __name__ == "__main__":
    run_stage(main)
