"""What every stage does first: read and check all of params.yaml, then set up the process."""

from __future__ import annotations

import argparse
import types
from pathlib import Path

from pipeline import params as params_module
from pipeline.params import Params


def load_checked(augmentations: bool = True) -> Params:
    """The whole params.yaml checked against its schema before any work starts; with `augmentations`,
    every augment entry's transforms are also built with albumentations.

    The check stage, which every stage follows under DVC, builds them; so do the stages that use them
    (augment, train). The others pass False: importing albumentations is 0.7 s of their start-up
    (a prepare process: 3.4 s in all), for entries they never read."""
    params = params_module.load()
    if augmentations:
        from pipeline.data import augment  # albumentations: only for this check here

        for name, spec in params.augment.items():
            augment.validate(spec, name)
    return params


def start(params: Params) -> types.ModuleType:
    """Backend, device, seeds and determinism; returns keras."""
    from pipeline import runtime

    return runtime.setup(params.runtime, params.seed)


# The path arguments stages take, all required: dvc.yaml passes each one, so a stage never guesses.
PATH_HELP = {
    "data": "prepared dataset folder (domain a of a CycleGAN)",
    "target": "prepared dataset folder of a CycleGAN's domain b",
    "train": "augmented training split folder",
    "out": "output folder",
    "model": "folder of the trained network(s)",
    "classifier": "folder of the classifier's model.keras",
    "reports": "folder of the entry's reports: metrics, history, figures",
    "checkpoints": "folder for resumable progress",
    "weights": "imported EfficientNet-Lite0 weights (import_weights stage)",
    "preview": "preview PNG",
}


def parser(description: str, entry: str, *paths: str) -> argparse.ArgumentParser:
    """Arguments of a stage that runs one `entry` of params.yaml (models, datasets, ...), and the
    required path arguments named in `paths` (keys of PATH_HELP)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("name", help=f"key of the {entry} entry in params.yaml")
    for name in paths:
        ap.add_argument(f"--{name}", type=Path, required=True, help=PATH_HELP[name])
    return ap
