"""The `sweeps:` section: hyperparameter searches on a Ray cluster (python -m pipeline.tools.sweep <name>).

A sweep varies keys of one `models:` entry: each search-space key must be a key of that model's
architecture, and every value the space can yield must pass that architecture's own checks (the
ends of a range, every choice). `dataset` and `architecture` pick another kind of model, and
`epochs` is the sweep's budget, so none of them is searched.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.errors import UserError, choices_hint
from pipeline.params.common import PositiveInt, Strict, key_error

if TYPE_CHECKING:
    from pipeline.params import Params

NOT_SEARCHED = ("dataset", "architecture", "epochs")
DOMAINS = ("range", "log_range", "choice")


class Domain(Strict):
    """Where one key is searched: exactly one of a range, a log-range or a list of choices.

    Ranges are uniform in the value (range) or in its logarithm (log_range), both ends included;
    over an integer key (batch_size, kernel_size, ...) they yield integers.
    """

    range: tuple[float, float] | None = None
    log_range: tuple[float, float] | None = None
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Domain:
        given = [k for k in DOMAINS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DOMAINS)} (got {', '.join(given) or 'none'})")
        for key in ("range", "log_range"):
            bounds = getattr(self, key)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise key_error(key, f"[low, high] with low < high (got {list(bounds)})")
            if key == "log_range" and bounds is not None and bounds[0] <= 0:
                raise key_error(key, f"a log-range needs low > 0 (got {list(bounds)})")
        return self

    def kind(self) -> str:
        return next(k for k in DOMAINS if getattr(self, k) is not None)

    def candidates(self) -> list[Any]:
        """The values that stand for the whole domain in checks: the ends of a range, every choice."""
        return list(self.choice if self.choice is not None else getattr(self, self.kind()))


class Asha(Strict):
    """Asynchronous successive halving: at epochs grace_period * reduction_factor**k, a trial whose
    metric is not in the best 1/reduction_factor of the trials that reached that epoch stops."""

    grace_period: PositiveInt
    reduction_factor: int = Field(ge=2, le=16)


class Sweep(Strict):
    model: str
    space: dict[str, Domain] = Field(min_length=1)
    metric: str
    mode: Literal["min", "max"]
    algorithm: Literal["tpe", "random"]
    trials: int = Field(ge=1, le=10_000)
    epochs: int = Field(ge=1, le=10_000)
    trial_cpus: float = Field(gt=0.0, le=1024.0)
    asha: Asha | None = None  # None: every trial runs its whole budget

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, value: str) -> str:
        if not value.startswith("val_"):
            raise ValueError(
                "a per-epoch validation metric, val_ and a metric the model logs: val_loss, val_accuracy, "
                "val_mean_iou (a unet), ..."
            )
        return value


def integer_keys(kind: type[Strict]) -> set[str]:
    """Keys of a model kind that hold one integer: a range over them yields integers."""
    out = set()
    for name, field in kind.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        if annotation is int:
            out.add(name)
    return out


def check_sweeps(params: Params, source: str) -> None:
    """Each sweep names a model, and every value its space can yield is valid for that model's kind."""
    for name, sweep in params.sweeps.items():
        where = f"{source}: sweeps.{name}"
        if sweep.model not in params.models:
            raise UserError(
                f"{where}.model: no model '{sweep.model}'; {choices_hint(sweep.model, params.models)}"
            )
        entry = params.models[sweep.model]
        kind = type(entry)
        searchable = [k for k in kind.model_fields if k not in NOT_SEARCHED]
        integers = integer_keys(kind)
        for key, domain in sweep.space.items():
            if key in NOT_SEARCHED:
                why = "is the sweep's budget (sweeps.<name>.epochs)" if key == "epochs" else "picks the model"
                raise UserError(
                    f"{where}.space.{key}: not searchable: it {why}; valid keys: {', '.join(searchable)}"
                )
            if key not in kind.model_fields:
                raise UserError(
                    f"{where}.space.{key}: not a key of models.{sweep.model} "
                    f"(architecture {entry.architecture}); {choices_hint(key, searchable)}"
                )
            if (
                domain.kind() != "choice"
                and key not in integers
                and kind.model_fields[key].annotation is not float
            ):
                raise UserError(
                    f"{where}.space.{key}: a {domain.kind()} needs a number key; use choice for it"
                )
            for value in domain.candidates():
                if domain.kind() != "choice" and key in integers and value != int(value):
                    raise UserError(
                        f"{where}.space.{key}: {key} is an integer; give integer bounds (got {value})"
                    )
                try:
                    kind.model_validate({**entry.model_dump(), key: value, "epochs": sweep.epochs})
                except ValidationError as exc:
                    err = exc.errors()[0]
                    msg = err["msg"].removeprefix("Value error, ")
                    raise UserError(
                        f"{where}.space.{key}: {value!r} is not valid for models.{sweep.model}: {msg}"
                    ) from None
