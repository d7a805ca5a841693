"""DVC stages `dcgan_train` and `cyclegan_train`: fit a GAN with FID (EfficientNet-Lite0 features)
and a fixed-seed sample grid every epoch; save its networks; log the run to MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    ap = parser(__doc__, "dcgans or cyclegans")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset (domain a for a CycleGAN)")
    ap.add_argument("--target", type=Path, help="prepared dataset of domain b (CycleGAN)")
    ap.add_argument("--out", type=Path, required=True, help="output folder for the networks (.keras)")
    ap.add_argument("--reports", type=Path, required=True, help="folder for history.csv and figures")
    ap.add_argument("--weights", type=Path, required=True, help="imported EfficientNet-Lite0 weights (FID)")
    args = ap.parse_args()
    params = load_checked()
    p = params.gan(args.name)
    cycle = args.name in params.cyclegans
    if params.runtime.backend != "tensorflow":
        raise UserError(
            f"runtime.backend: GAN training ({'cyclegans' if cycle else 'dcgans'}.{args.name}) overrides "
            "train_step with tf.GradientTape and runs on tensorflow only; valid: tensorflow"
        )
    if cycle and args.target is None:
        raise UserError(f"cyclegans.{args.name}: give --target, the prepared folder of dataset '{p.target}'")
    keras = start(params)

    from pipeline import fid, gan_training, plots, tracking, training
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest
    from pipeline.stages.train import write_history

    manifest = read_manifest(args.data)
    x, y = load_split(args.data, "train")
    tx, ty = load_split(args.data, "test")
    tx, ty = np.asarray(tx), np.asarray(ty)
    shape = tuple(manifest["shape"])
    for split, rows in (("train", x), ("test", tx)):
        if len(rows) < 2:
            raise UserError(
                f"datasets.{p.dataset}: the {split} split has {len(rows)} images; a GAN needs more"
            )
    title = (
        f"{args.name} ({'cyclegan' if cycle else 'dcgan'} on {p.dataset}{f' -> {p.target}' if cycle else ''})"
    )
    try:
        if cycle:
            target = read_manifest(args.target)
            if tuple(target["shape"]) != shape:
                raise UserError(
                    f"cyclegans.{args.name}.target: dataset '{p.target}' has images of shape "
                    f"{target['shape']}, dataset '{p.dataset}' {manifest['shape']}; "
                    "a CycleGAN needs both the same"
                )
            bx, _ = load_split(args.target, "train")
            btx = np.asarray(load_split(args.target, "test")[0])
            n = min(len(tx), len(btx))  # the same number of images on both sides of every FID
            tx, btx = tx[:n], btx[:n]
            scorer = fid.FidScorer(tx, args.weights)
            scorer_b = fid.FidScorer(btx, args.weights)
            data = gan_training.UnpairedBatches(x, bx, p.batch_size, params.seed)
            model = gan_training.build_cyclegan(p, shape)
            nets = {"g_ab": model.g_ab, "g_ba": model.g_ba, "d_a": model.d_a, "d_b": model.d_b}
            shown = slice(0, p.grid)

            def measure() -> dict[str, float]:
                return gan_training.cycle_measures(model.g_ab, model.g_ba, tx, btx, scorer, scorer_b)

            def grid(path: Path) -> None:
                names = (p.dataset, p.target)
                gan_training.cycle_grid(model.g_ab, model.g_ba, tx[shown], btx[shown], names, path, title)
        else:
            classes = manifest["classes"]
            data = training.ArrayBatches(x, y, p.batch_size, True, params.seed, len(classes), sparse=True)
            model = gan_training.build_dcgan(p, shape, len(classes), len(data), params.seed)
            scorer = fid.FidScorer(tx, args.weights)
            # The sampler (the EMA generator if dcgans.<name>.ema_decay is set) is what is measured,
            # shown and saved as generator.keras, from the first epoch on.
            nets = {"generator": model.sampler, "discriminator": model.discriminator}

            def measure() -> dict[str, float]:
                return {fid.METRIC: scorer(gan_training.dcgan_sample(model.sampler, p, ty, params.seed))}

            def grid(path: Path) -> None:
                gan_training.dcgan_grid(model.sampler, p, classes, params.seed, path, title)
    except ValueError as exc:  # hyperparameters that do not fit the images, e.g. too many stride-2 steps
        raise UserError(
            f"{'cyclegans' if cycle else 'dcgans'}.{args.name}: {exc} (dataset '{p.dataset}')"
        ) from None
    model.compile(
        g_optimizer=gan_training.adam(p.g_lr, p.beta_1, p.epochs * len(data)),
        d_optimizer=gan_training.adam(p.d_lr, p.beta_1, p.epochs * len(data)),
        jit_compile=params.runtime.jit_compile,
    )
    if params.runtime.verbose:
        for net in nets.values():
            net.summary()

    run_params = {
        **tracking.flatten("model", p.model_dump()),
        **tracking.flatten("dataset", manifest["params"]),
        **tracking.flatten("runtime", params.runtime.model_dump()),
        "seed": str(params.seed),
        "model_name": args.name,
        "train_images": str(len(x)),
        "fid_images": str(len(tx)),
        "fid": f"{fid.NAME}, input {fid.INPUT_SIZE}px",
    }
    tags = {
        **tracking.provenance_tags(),
        "model": args.name,
        "architecture": "cyclegan" if cycle else "dcgan",
        "dataset": p.dataset,
        "dataset_hash": manifest["source_hash"],
    }
    with (
        atomic_dir(args.out) as tmp,
        tracking.training_run(params.tracking, args.name, run_params, tags) as run,
    ):
        measures = gan_training.EpochMeasures(measure, grid, run.info.run_id)
        epoch_logger = tracking.EpochLogger()
        model.fit(
            data,
            epochs=p.epochs,
            # Measures first: they add FID to the logs that the epoch logger then sends to MLflow.
            callbacks=[measures, keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log)],
            verbose=params.runtime.verbose,
        )
        for name, net in nets.items():
            training.save_model(net, tmp / f"{name}.keras")
        history = measures.columns()
        args.reports.mkdir(parents=True, exist_ok=True)
        write_history(history, args.reports / "history.csv")
        plots.gan_curves(history, args.reports / "fid.png", title)
        grid(args.reports / "samples.png")
        main_net = tmp / ("g_ab.keras" if cycle else "generator.keras")
        tracking.set_tags({tracking.MODEL_HASH_TAG: tracking.file_md5(main_net)})
        tracking.log_artifacts(
            run.info.run_id,
            [args.reports / n for n in ("history.csv", "fid.png", "samples.png")],
        )
    fids = {k: v for k, v in history.items() if k.startswith(fid.METRIC)}
    line = "; ".join(f"{k} {v[0]:.3f} -> {v[-1]:.3f}" for k, v in fids.items())
    print(f"train {args.name}: {fid.NAME} first -> last epoch: {line}; MLflow run {run.info.run_id}")


if __name__ == "__main__":
    run_cli(main)
