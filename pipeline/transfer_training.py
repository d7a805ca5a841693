"""The two-phase fit of a `transfer` model: feature extraction, then fine-tuning.

Phase 1 trains the new head on a frozen pretrained backbone (`epochs`, `lr`). Phase 2 unfreezes
the backbone's top `fine_tune_layers` layers and goes on at `fine_tune_lr` for
`fine_tune_epochs`, recompiled so the optimizer sees the new trainable set. Epochs continue
across phases (phase 2 starts at epoch `epochs` + 1), so both form one curve and one MLflow run;
every epoch's metrics carry `phase` (1 or 2).

With `weights: null` nothing is frozen in either phase: the scratch baseline gets the same
epochs and learning rates, so the comparison measures the weights alone.
"""

from __future__ import annotations

import math
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
    jit: bool,
    verbose: int,
    epoch_logger: tracking.EpochLogger,
) -> dict[str, list[float]]:
    """Fit both phases; returns the joined Keras history with a `phase` entry per epoch.

    Ends with the weights of the best validation epoch of either phase.
    """
    pretrained = p.weights is not None
    net = transfer.backbone_of(model)
    net.trainable = not pretrained
    tags = {"phase1_trainable_params": str(_trainable(model))}
    history = fit_phase(model, p, train_data, val_data, num_classes, jit, verbose, epoch_logger, 1, 0)
    if p.fine_tune_epochs:
        best_phase1 = min(history["val_loss"])
        phase1_weights = model.get_weights()
        if pretrained:
            unfrozen = transfer.unfreeze_top(model, p.fine_tune_layers)
            tags["phase2_unfrozen"] = f"{len(unfrozen)} layers from {unfrozen[0]}"
        tags["phase2_trainable_params"] = str(_trainable(model))
        tags["phase2_first_epoch"] = str(p.epochs + 1)
        p2 = p.model_copy(update={"lr": p.fine_tune_lr, "epochs": p.fine_tune_epochs})
        h2 = fit_phase(model, p2, train_data, val_data, num_classes, jit, verbose, epoch_logger, 2, p.epochs)
        if min(h2["val_loss"]) > best_phase1:
            model.set_weights(phase1_weights)  # fine-tuning never beat phase 1: keep phase 1's best
        history = {k: history[k] + h2[k] for k in history}
    tracking.set_tags(tags)
    return history


def fit_phase(
    model: keras.Model,
    p: TransferParams,
    train_data,
    val_data,
    num_classes: int,
    jit: bool,
    verbose: int,
    epoch_logger: tracking.EpochLogger,
    phase: int,
    start: int,
) -> dict[str, list[float]]:
    """Compile for the current trainable set and fit p.epochs epochs from epoch `start`."""
    training.compile_model(model, p, num_classes, len(train_data), jit)

    def log(epoch: int, logs: dict) -> None:
        epoch_logger.log(epoch, {**logs, "phase": phase})

    history = model.fit(
        train_data,
        validation_data=val_data,
        initial_epoch=start,
        epochs=start + p.epochs,
        callbacks=[*training.callbacks(p), keras.callbacks.LambdaCallback(on_epoch_end=log)],
        verbose=verbose,
    ).history
    history["phase"] = [float(phase)] * len(history["val_loss"])
    return history


def _trainable(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)
