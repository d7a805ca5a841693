"""The two-phase fit of a `transfer` model: feature extraction, then fine-tuning.

Phase 1 trains the new head on a frozen pretrained backbone (`epochs`, `lr`). Phase 2 unfreezes
the backbone's top `fine_tune_layers` layers and goes on at `fine_tune_lr` for
`fine_tune_epochs`, recompiled so the optimizer sees the new trainable set. Epochs continue
across phases (phase 2 starts at epoch `epochs` + 1), so both form one curve and one MLflow run;
every epoch's metrics carry `phase` (1 or 2).

One `training.BestAndResume` spans both phases: phase 2 starts from phase 1's best weights, the
model ends with the best validation epoch of either phase, and a killed run resumes in the phase
it was in (the saved model keeps its trainable flags and optimizer).

With `weights: null` nothing is frozen in either phase: the scratch baseline gets the same
epochs and learning rates, so the comparison measures the weights alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path

import keras

from pipeline import tracking, training
from pipeline.models import transfer
from pipeline.params import TransferParams, arch_kwargs


def build(p: TransferParams, input_shape: tuple[int, ...], num_classes: int, weights_dir: Path | None):
    """The model for phase 1; `weights_dir` holds what the import_weights stage wrote."""
    return transfer.transfer(input_shape, num_classes, weights_dir=weights_dir, **arch_kwargs(p))


def fit_two_phases(
    model: keras.Model,
    p: TransferParams,
    train_data,
    val_data,
    num_classes: int,
    epoch_logger: tracking.EpochLogger,
    best: training.BestAndResume,
    start: int = 0,
    jit: bool | str = False,
    verbose: int = 0,
    scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    precise_bn: keras.callbacks.Callback | None = None,
) -> dict[str, list[float]]:
    """Fit both phases from epoch `start` (0, or the epoch after a resumed checkpoint).

    Returns the history columns with a `phase` entry per epoch. `scope` is the distribution scope
    to compile in; `precise_bn` (training.PreciseBatchNorm) re-estimates the trainable BatchNorm
    layers' statistics after each epoch's steps.
    """
    pretrained = p.weights is not None
    tags = {"phase2_first_epoch": str(p.epochs + 1)}
    if start < p.epochs:
        if start == 0:  # a resumed model comes back with its flags and optimizer
            transfer.backbone_of(model).trainable = not pretrained
            with scope():
                training.compile_model(model, p, num_classes, len(train_data), jit)
        tags["phase1_trainable_params"] = str(_trainable(model))
        fit_phase(model, train_data, val_data, epoch_logger, best, 1, start, p.epochs, verbose, precise_bn)
    if p.fine_tune_epochs:
        if start <= p.epochs:
            if start == p.epochs and best.checkpoints.best.is_file():
                model.load_weights(best.checkpoints.best)  # resumed between phases: start from the best
            if pretrained:
                unfrozen = transfer.unfreeze_top(model, p.fine_tune_layers)
                tags["phase2_unfrozen"] = f"{len(unfrozen)} layers from {unfrozen[0]}"
            p2 = p.model_copy(update={"lr": p.fine_tune_lr, "epochs": p.fine_tune_epochs})
            with scope():
                training.compile_model(model, p2, num_classes, len(train_data), jit)
        tags["phase2_trainable_params"] = str(_trainable(model))
        end = p.epochs + p.fine_tune_epochs
        fit_phase(
            model, train_data, val_data, epoch_logger, best, 2, max(start, p.epochs), end, verbose, precise_bn
        )
    tracking.set_tags(tags)
    history = best.history_columns()
    history["phase"] = [1.0 if i < p.epochs else 2.0 for i in range(len(history["val_loss"]))]
    return history


def fit_phase(
    model: keras.Model,
    train_data,
    val_data,
    epoch_logger: tracking.EpochLogger,
    best: keras.callbacks.Callback,
    phase: int,
    start: int,
    end: int,
    verbose: int = 0,
    precise_bn: keras.callbacks.Callback | None = None,
) -> None:
    """Fit the compiled model from epoch `start` to `end`, logging each epoch with its phase."""

    def log(epoch: int, logs: dict) -> None:
        epoch_logger.log(epoch, {**logs, "phase": phase})

    training.fit(
        model,
        train_data,
        validation_data=val_data,
        initial_epoch=start,
        epochs=end,
        # Log the epoch before checkpointing it, as the plain train stage does.
        callbacks=[
            *([precise_bn] if precise_bn else []),
            keras.callbacks.LambdaCallback(on_epoch_end=log),
            best,
        ],
        verbose=verbose,
    )


def _trainable(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)
