"""The lecture's "always start with a pre-trained model", measured: test accuracy against the number of
training images per class, an ImageNet-pretrained network against one trained from scratch.

- pretrained: the transfer model's phase 1, i.e. its frozen backbone (ImageNet weights) with a new
  head trained on the few images. The backbone is frozen and its BatchNorm in inference mode, so its
  features are computed once for all images and each point trains only the head on them: the same
  network as the full model's phase 1, at a fraction of the cost.
- scratch: a network from random weights (a `models:` entry's architecture, built for this dataset)
  trained on the same images for the same epochs.

Each point draws `seeds` different subsets (stratified, seeded by the seed and the point); the figure
shows their mean and spread. The test split is the dataset's whole test split at every point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.params import LearningCurve, Params


def subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` training images of every class (all of a class that has fewer)."""
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(y == c), min(per_class, int(np.sum(y == c))), replace=False)
        for c in np.unique(y)
    ]
    return np.sort(np.concatenate(chosen))


class Learner:
    """One network, compiled once and trained again from a fresh seeded initialisation at every point
    and seed: its traced training step is reused (tracing costs more than these small fits). The
    learning rate is constant, as no per-point step count may be compiled into the step. BatchNorm
    is re-estimated over the training images after the last epoch, as the train stage does after
    each (after a handful of steps its moving averages still hold the untrained statistics)."""

    def __init__(self, build: Callable, p, classes: int, jit):
        import keras

        from pipeline.training import compile_model, training_forward

        self.build, self.classes = build, classes
        self.p = p.model_copy(update={"schedule": "constant"})
        self.model = build()
        compile_model(self.model, self.p, classes, 1, jit)
        self.forward = training_forward(self.model)  # traced once, for every re-estimate
        self.keras = keras

    def score(self, x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray, seed: int) -> float:
        """Test accuracy on (tx, ty) after p.epochs on (x, y), from the initialisation of `seed`."""
        from pipeline.training import ArrayBatches, estimate_batch_norm, fit, predict_proba

        self.keras.utils.set_random_seed(seed)
        self.model.set_weights(self.build().get_weights())
        for v in self.model.optimizer.variables:  # a fresh optimizer: step 0, no moments
            if "learning_rate" not in v.path:
                v.assign(np.zeros(v.shape, v.dtype))
        batch = min(self.p.batch_size, len(x))
        # The epochs as one pass over their shuffled orders laid end to end: Keras's per-epoch work
        # cost more than these few steps per epoch.
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(len(x)) for _ in range(self.p.epochs)])
        fit(self.model, ArrayBatches(x[order], y[order], batch, False, seed, self.classes), verbose=0)
        estimate_batch_norm(self.model, ArrayBatches(x, y, batch, True, seed, self.classes), self.forward)
        return float(np.mean(predict_proba(self.model, tx).argmax(axis=1) == ty))


def measure(params: Params, spec: LearningCurve, prepared: Path, weights_dir: Path) -> dict:
    """Test accuracy of both networks at every point and seed; the summary with the target."""
    import keras

    from pipeline.data.arrays import load_split, read_manifest
    from pipeline.models.classifiers import classifier_head
    from pipeline.tasks.model import build_model
    from pipeline.training import predict_outputs

    pre = params.model(spec.pretrained).model_copy(update={"dataset": spec.dataset, "epochs": spec.epochs})
    scratch_p = params.model(spec.scratch).model_copy(update={"dataset": spec.dataset, "epochs": spec.epochs})
    data = prepared / spec.dataset
    manifest = read_manifest(data)
    classes = len(manifest["classes"])
    x, y = load_split(data, "train")
    tx, ty = load_split(data, "test")
    x, tx = np.asarray(x), np.asarray(tx)
    keras.utils.set_random_seed(params.seed)
    full = build_model(pre, manifest, weights_dir, spec.pretrained)
    features = keras.Model(full.input, full.get_layer("pool").output)
    f, tf_ = predict_outputs(features, x), predict_outputs(features, tx)

    def head() -> keras.Model:  # the transfer model's head: dropout, then the classifier
        inputs = keras.Input(f.shape[1:])
        hidden = keras.layers.Dropout(pre.dropout)(inputs) if pre.dropout else inputs
        return keras.Model(inputs, classifier_head(hidden, classes))

    jit = params.runtime.jit_compile
    learners = {
        "pretrained": (Learner(head, pre, classes, jit), f, tf_),
        "scratch": (
            Learner(lambda: build_model(scratch_p, manifest, None, spec.scratch), scratch_p, classes, jit),
            x,
            tx,
        ),
    }
    accuracy: dict[str, dict[str, list[float]]] = {kind: {} for kind in learners}
    images: dict[str, int] = {}
    for point in spec.per_class:
        for s in range(spec.seeds):
            seed = params.seed * 1000 + s
            idx = subset(y, point, seed + point)
            images[str(point)] = len(idx)
            for kind, (learner, train, test) in learners.items():
                accuracy[kind].setdefault(str(point), []).append(
                    learner.score(train[idx], y[idx], test, ty, seed)
                )
        shown = ", ".join(f"{kind} {np.mean(accuracy[kind][str(point)]):.3f}" for kind in learners)
        print(f"lecture: learning curve, {point} per class: {shown}", flush=True)
    return summary(spec, spec.dataset, manifest["classes"], accuracy, images, len(ty))


def summary(
    spec: LearningCurve,
    dataset: str,
    classes: list[str],
    accuracy: dict[str, dict[str, list[float]]],
    images: dict[str, int],
    tests: int,
) -> dict:
    """Mean and spread per point; the smallest gap of pretrained over scratch at 8 or fewer per class."""
    stats = {
        kind: {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for k, v in acc.items()}
        for kind, acc in accuracy.items()
    }
    few = [k for k in accuracy["pretrained"] if int(k) <= 8]
    gaps = {k: stats["pretrained"][k]["mean"] - stats["scratch"][k]["mean"] for k in few}
    gap = min(gaps.values()) if gaps else float("nan")
    return {
        "dataset": dataset,
        "classes": classes,
        "models": {"pretrained": spec.pretrained, "scratch": spec.scratch},
        "epochs": spec.epochs,
        "seeds": spec.seeds,
        "training_images": images,
        "test_images": tests,
        "accuracy": stats,
        "gap_at_8_or_fewer": gaps,
        "target": "pretrained at least 0.10 above scratch at every point with 8 or fewer images per class",
        "met": bool(gaps) and gap >= 0.10,
    }


def figure(result: dict, path: Path) -> None:
    """Mean test accuracy (error bars: the spread over seeds) against training images per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.plots import save

    fig, ax = plt.subplots(figsize=(5.5, 4))
    points = list(result["accuracy"]["pretrained"])
    xs = [int(k) for k in points]
    for kind, name in result["models"].items():
        stats = result["accuracy"][kind]
        ax.errorbar(
            xs,
            [stats[k]["mean"] for k in points],
            yerr=[stats[k]["std"] for k in points],
            marker="o",
            capsize=3,
            label=f"{name} ({'ImageNet weights, new head' if kind == 'pretrained' else 'from scratch'})",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, points)
    ax.set_xlabel("training images per class")
    ax.set_ylabel(f"test accuracy ({result['test_images']} images)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{result['dataset']}: the free lunch of pretrained weights")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save(fig, path)


def run(params: Params, spec: LearningCurve, prepared: Path, weights_dir: Path, out: Path) -> str:
    """Measure the curve; write out/learning_curve.json and .png, log them to MLflow; the summary line."""
    from pipeline.data.arrays import write_json

    curve = measure(params, spec, prepared, weights_dir)
    files = [out / "learning_curve.json", out / "learning_curve.png"]
    write_json(files[0], curve)
    figure(curve, files[1])
    run_id = log_run(params.tracking, curve, files)
    gaps = ", ".join(f"{k}/class +{v:.2f}" for k, v in curve["gap_at_8_or_fewer"].items())
    target = curve["target"]
    return f"lecture: learning curve: pretrained over scratch {gaps} (target {target}); MLflow run {run_id}"


def log_run(tracking_params, result: dict, files: Sequence[Path]) -> str:
    """One MLflow run named learning_curve: each kind's mean test accuracy (and its spread) with the
    training images per class as the step, so the UI's chart of the metric is the curve; the files."""
    from pipeline import tracking

    run_id = tracking.new_run(tracking_params, "learning_curve", {"lecture": "learning_curve"})
    tracking.log_params(
        run_id,
        {
            "dataset": result["dataset"],
            "epochs": result["epochs"],
            "seeds": result["seeds"],
            **result["models"],
        },
    )
    for kind, stats in result["accuracy"].items():
        for k, s in stats.items():
            step = int(k)
            tracking.log_metrics(
                run_id, {f"{kind}_test_accuracy": s["mean"], f"{kind}_test_accuracy_std": s["std"]}, step
            )
    tracking.log_artifacts(run_id, list(files))
    return run_id
