"""DVC stages `dcgan_evaluate` and `cyclegan_evaluate`: score the trained GAN on the test split
(FID on EfficientNet-Lite0 features; the classifier's verdict on a DCGAN's samples; a CycleGAN's
cycle error) into metrics.json, and log them into the GAN's training run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start


def read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise UserError(f"{path}: missing; run the GAN's train stage first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}


def spread(features: np.ndarray) -> float:
    """Mean Euclidean distance between two different rows: how varied a set is in feature space."""
    from scipy.spatial.distance import pdist

    return float(pdist(np.asarray(features, np.float64)).mean()) if len(features) > 1 else float("nan")


def diversity(sample_features: np.ndarray, real_features: np.ndarray, groups) -> dict:
    """Per group (class): the samples' spread over the real images' spread. 1 is as varied as the real
    images; a generator that draws one figure per class scores near 0, which the label accuracy
    cannot show."""
    out = {}
    for name, mask in groups:
        real = spread(real_features[mask]) if mask.sum() > 1 else 0.0
        out[name] = spread(sample_features[mask]) / real if real > 0 else None  # None: nothing to compare
    return out


def main() -> None:
    ap = parser(__doc__, "dcgans or cyclegans")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset (domain a for a CycleGAN)")
    ap.add_argument("--target", type=Path, help="prepared dataset of domain b (CycleGAN)")
    ap.add_argument("--model", type=Path, required=True, help="folder of the trained networks")
    ap.add_argument("--classifier", type=Path, help="folder of the classifier's model.keras (DCGAN)")
    ap.add_argument("--reports", type=Path, required=True, help="folder for metrics.json")
    ap.add_argument("--weights", type=Path, required=True, help="imported EfficientNet-Lite0 weights (FID)")
    args = ap.parse_args()
    params = load_checked()
    p = params.gan(args.name)
    cycle = args.name in params.cyclegans
    keras = start(params)

    from pipeline import fid, gan_training, tracking, training
    from pipeline.data.arrays import load_split, read_manifest, write_json

    def load(name: str):
        path = args.model / f"{name}.keras"
        if not path.is_file():
            section = "cyclegans" if cycle else "dcgans"
            raise UserError(f"{path}: missing; run the train stage of {section}.{args.name} first")
        return keras.saving.load_model(path), path

    history = read_history(args.reports / "history.csv")
    tx, ty = load_split(args.data, "test")
    tx, ty = np.asarray(tx), np.asarray(ty)
    if cycle:
        (g_ab, model_file), (g_ba, _) = load("g_ab"), load("g_ba")
        btx = np.asarray(load_split(args.target, "test")[0])
        n = min(len(tx), len(btx))  # as in training: equal sizes on both sides of every FID
        tx, btx = tx[:n], btx[:n]
        score_a, score_b = fid.FidScorer(tx, args.weights), fid.FidScorer(btx, args.weights)
        measured = gan_training.cycle_measures(g_ab, g_ba, tx, btx, score_a, score_b)
        # What doing nothing scores: each domain's real test images against the other's. A
        # translation worth its name gets below this.
        summary: dict = {
            "fid": fid.NAME,
            "test_images": n,
            f"{fid.METRIC}_untranslated_ab": score_b(tx),
            f"{fid.METRIC}_untranslated_ba": score_a(btx),
        }
        for key, value in measured.items():
            summary[key] = value
            summary[f"{key}_first_epoch"] = history[key][0]
            summary[f"{key}_ratio"] = value / history[key][0] if history[key][0] else None
        line = (
            f"{fid.METRIC} {p.dataset}->{p.target} {summary[f'{fid.METRIC}_ab']:.3f} "
            f"(first epoch {summary[f'{fid.METRIC}_ab_first_epoch']:.3f}), {p.target}->{p.dataset} "
            f"{summary[f'{fid.METRIC}_ba']:.3f} (first epoch {summary[f'{fid.METRIC}_ba_first_epoch']:.3f}); "
            f"cycle error {summary['cycle_error']:.4f} (first epoch {summary['cycle_error_first_epoch']:.4f})"
        )
    else:
        generator, model_file = load("generator")
        if args.classifier is None or not (args.classifier / "model.keras").is_file():
            raise UserError(
                f"dcgans.{args.name}.classifier: no trained model at {args.classifier}/model.keras; "
                f"run the train stage of models.{p.classifier} first"
            )
        classifier = keras.saving.load_model(args.classifier / "model.keras")
        classes = read_manifest(args.data)["classes"]
        # predict_proba's columns are the classes the classifier tells apart (one sigmoid unit: two).
        real_proba = training.predict_proba(classifier, tx)
        predicts = real_proba.shape[1]
        if predicts != len(classes):
            raise UserError(
                f"dcgans.{args.name}.classifier: models.{p.classifier} predicts {predicts} classes, "
                f"dataset '{p.dataset}' has {len(classes)} ({', '.join(classes)}); "
                "retrain it on a dataset with these classes"
            )
        samples = gan_training.dcgan_sample(generator, p, ty, params.seed)
        scorer = fid.FidScorer(tx, args.weights)
        sample_features = scorer.features(samples)
        value = fid.features_distance(sample_features, scorer.reference)
        vx = np.asarray(load_split(args.data, "val")[0])[: len(tx)]
        predicted = training.predict_proba(classifier, samples).argmax(axis=1)
        real = real_proba.argmax(axis=1)
        summary = {
            "fid": fid.NAME,
            fid.METRIC: value,
            f"{fid.METRIC}_first_epoch": history[fid.METRIC][0],
            f"{fid.METRIC}_ratio": value / history[fid.METRIC][0] if history[fid.METRIC][0] else None,
            # Real validation images against the real test images: the floor a perfect generator reaches
            # (only with as many images as the test split; fewer score higher).
            f"{fid.METRIC}_real_val": scorer(vx) if len(vx) == len(tx) else None,
            "classifier": p.classifier,
            # Of the real test images, the share the classifier gets right: the ceiling of the next one.
            "classifier_test_accuracy": float(np.mean(real == ty)),
            "samples_shown_per_class": {c: float(np.mean(predicted == i)) for i, c in enumerate(classes)},
            "test_images": len(tx),
        }
        groups = (
            [(c, ty == i) for i, c in enumerate(classes)]
            if p.conditional
            else [("all", np.ones(len(ty), bool))]
        )
        per_group = diversity(sample_features, scorer.reference, groups)
        known = [v for v in per_group.values() if v is not None]
        # The least varied class: a mean let over-dispersed noise images hide a collapsed class.
        summary["diversity"] = float(min(known)) if known else None
        if p.conditional:
            summary["per_class_diversity"] = per_group
            summary["label_accuracy"] = float(np.mean(predicted == ty))
            summary["per_class_label_accuracy"] = {
                c: float(np.mean(predicted[ty == i] == i)) if np.any(ty == i) else None
                for i, c in enumerate(classes)
            }
        line = f"{fid.METRIC} {value:.3f} (first epoch {history[fid.METRIC][0]:.3f})"
        if summary["diversity"] is not None:
            line += f"; diversity {summary['diversity']:.2f} of the real images' (least varied class)"
        if p.conditional:
            line += f"; {summary['label_accuracy']:.3f} of samples classified as their label"
    args.reports.mkdir(parents=True, exist_ok=True)
    write_json(args.reports / "metrics.json", summary)

    run_id = tracking.find_training_run(params.tracking, args.name, model_file)
    if run_id is None:
        print(f"evaluate {args.name}: its training run is not in the tracking store; logging a new run")
        run_id = tracking.new_run(
            params.tracking, args.name, {"model": args.name, "note": "training run not found"}
        )
    flat = {
        f"test_{k}": v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    tracking.log_metrics(run_id, flat)
    tracking.log_artifacts(run_id, [args.reports / "metrics.json"])
    tracking.log_artifacts(run_id, [Path("params.yaml"), Path("dvc.lock")], "pipeline")
    print(f"evaluate {args.name}: {line}; MLflow run {run_id}")


if __name__ == "__main__":
    run_cli(main)
