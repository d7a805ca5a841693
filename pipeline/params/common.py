"""What every section shares: the strict base class, annotated value types, runtime and tracking.

The schema's rule: a field has no default unless leaving it out means "off" (None, False, 0 or an
empty list or mapping) for an optional switch. Every other value is stated in params.yaml, so no
code default can silently differ from it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

PARAMS_FILE = "params.yaml"

Fraction = typing.Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = typing.Annotated[int, Field(ge=1)]
NonNegativeInt = typing.Annotated[int, Field(ge=0)]
Dropout = typing.Annotated[float, Field(ge=0.0, lt=1.0)]

KEY_ERROR = "key_error"  # an error about one key of an entry, raised by a check of the whole entry


def key_error(key: str, message: str) -> PydanticCustomError:
    """An error of `key` of the entry being checked; messages.describe() adds the key to the path."""
    return PydanticCustomError(KEY_ERROR, "{key}: {message}", {"key": key, "message": message})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def _require(self, keys: Iterable[str], when: str) -> None:
        """Optional switches that this entry's mode reads: each must be given (not None)."""
        for key in keys:
            if getattr(self, key) is None:
                raise key_error(key, f"required key is missing {when}")

    def _refuse(self, keys: Iterable[str], why: str, how: str) -> None:
        """Optional switches that this entry's mode ignores: each must be left out (or None)."""
        keys = tuple(keys)
        for key in keys:
            if getattr(self, key) is not None:
                valid = [k for k in type(self).model_fields if k not in keys]
                raise key_error(key, f"ignored {why}; leave it out or {how}; valid keys: {', '.join(valid)}")


class Runtime(Strict):
    backend: Literal["tensorflow", "jax"]
    device: Literal["auto", "cpu", "gpu"]
    deterministic: bool
    mixed_precision: bool
    jit_compile: bool | Literal["auto"]  # auto: Keras decides (XLA on JAX; off on TensorFlow on CPU)
    distribute: Literal["none", "mirrored", "multi_worker"]
    workers: int = Field(ge=1, le=64)
    verbose: Literal[0, 1, 2]


class Tracking(Strict):
    uri: str | None  # None: MLFLOW_TRACKING_URI, else a SQLite file at the repository root
    experiment: str = Field(min_length=1)


class Splits(Strict):
    """What every dataset has, images or not: how it is split."""

    val_fraction: Fraction
    test_fraction: Fraction

    @model_validator(mode="after")
    def _train_left(self) -> Splits:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 0.1 for training")
        return self

    def spatial_dims(self) -> int | None:
        """1 for sequences, 2 for images, 3 for videos; None where a source does not say."""
        return None
