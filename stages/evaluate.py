"""evaluate: score the trained model once on the test split; write metrics, plot data, figures."""
import argparse
from pathlib import Path


from imagerec import datasets, evaluation, figures, gradcam, inference, models, params
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, atomic_file, write_json

GRADCAM_IMAGES = 8  # at most this many of the sample images get a heat map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="data/config/<dataset>/evaluate.json")
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("metrics_file", type=Path, help="output: metrics JSON")
    parser.add_argument("plots_dir", type=Path,
                        help="output: ROC, precision-recall, calibration and confusion data, report, image grids")
    args = parser.parse_args()
    p = params.load_stage(args.config)

    test = datasets.load(args.prepared_dir, splits=["test"]).splits["test"]
    model, card = inference.load(args.model_dir)
    models.check_input_shape(model, test.images.shape[1:])
    classes = card["classes"]
    probabilities = inference.predict(inference.keras_runner(model), test.images, p.evaluate.batch_size, p.evaluate.tta)
    labels = test.labels

    scores = evaluation.scorecard(labels, probabilities, classes)
    roc = evaluation.roc_curves(labels, probabilities, classes)
    pr = evaluation.pr_curves(labels, probabilities, classes)
    calibration = evaluation.reliability(labels, probabilities)
    pick = evaluation.examples(labels, probabilities, p.evaluate.samples_shown, p.seed, GRADCAM_IMAGES)
    shown, wrong, confidently_wrong, explained = pick["shown"], pick["wrong"], pick["confidently_wrong"], pick["explained"]
    # HiResCAM: Grad-CAM without averaging the gradients over the map, which stays faithful to
    # a CNN head that flattens its features (plain Grad-CAM lit up the background there) and
    # equals Grad-CAM for MobileNetV2's global-average-pooling head.
    heat = gradcam.heatmaps(model, test.images[explained], probabilities[explained].argmax(axis=1), method="hirescam")

    with atomic_dir(args.plots_dir) as out:
        # One file per plot, every class's curve in it (its "curve" field): dvc.yaml then names
        # no class, and DVC's curves_by_class template draws one line per class. These are the
        # only copies: `dvc plots`, `imagerec report` and the page draw from them; Matplotlib
        # draws only what they cannot, the grids of images.
        write_json(out / "roc.json", [point for points in roc.values() for point in points])
        write_json(out / "pr.json", [point for points in pr.values() for point in points])
        write_json(out / "calibration.json", calibration)
        write_json(out / "confused_pairs.json", evaluation.confused_pairs(labels, probabilities, classes))
        evaluation.confusion_rows(labels, probabilities, classes).to_csv(out / "confusion.csv", index=False)
        with atomic_file(out / "classification_report.txt") as f:
            f.write(evaluation.text_report(labels, probabilities, classes))

        figures.predictions(test.images[shown], labels[shown], probabilities[shown], classes,
                            out / "predictions.png", "sample test predictions")
        figures.predictions(test.images[wrong], labels[wrong], probabilities[wrong], classes,
                            out / "misclassified.png", f"misclassified test images ({len(wrong)} shown)")
        figures.predictions(test.images[confidently_wrong], labels[confidently_wrong], probabilities[confidently_wrong],
                            classes, out / "confidently_wrong.png",
                            f"most confidently wrong test images ({len(confidently_wrong)} shown)")
        figures.gradcam(test.images[explained], heat, labels[explained], probabilities[explained], classes,
                        out / "gradcam.png", f"HiResCAM (Grad-CAM) of the predicted class ({gradcam.feature_layer(model).name})")
    write_json(args.metrics_file, scores)
    print(f"{p.dataset}: test accuracy {scores['accuracy']:.4f}, ROC AUC macro {scores['roc_auc_macro']:.4f}, "
          f"AP micro {scores['average_precision_micro']:.4f}, ECE {scores['expected_calibration_error']:.4f}")


if __name__ == "__main__":
    run_stage(main)
