"""What every stage does first: read and check all of params.yaml, then set up the process."""

from __future__ import annotations

import argparse
import types

from pipeline import params as params_module
from pipeline.params import Params


def load_checked() -> Params:
    """The whole params.yaml, augmentations included, checked before any work starts."""
    params = params_module.load()
    from pipeline.data import augment  # albumentations is only needed for this check here

    for name, spec in params.augment.items():
        augment.validate(spec, name)
    return params


def start(params: Params) -> types.ModuleType:
    """Backend, device, seeds and determinism; returns keras."""
    from pipeline import runtime

    return runtime.setup(params.runtime, params.seed)


def parser(description: str, entry: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("name", help=f"key of the {entry} entry in params.yaml")
    return ap


def require_tensorflow(params: Params, section: str, name: str) -> None:
    """GAN training overrides train_step with tf.GradientTape: refuse another backend in one line."""
    if params.runtime.backend != "tensorflow":
        from pipeline.errors import UserError

        raise UserError(
            f"runtime.backend: GAN training ({section}.{name}) overrides "
            "train_step with tf.GradientTape and runs on tensorflow only; valid: tensorflow"
        )
