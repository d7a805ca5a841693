"""Typed schema of params.yaml and `load()`, which checks the whole file before any work starts.

Datasets are chosen by their `source`, models by their `architecture` (tagged unions); each kind
has its own strict class holding exactly the keys that kind reads, so an unknown or ignored key is
caught with the valid keys of that very kind. No field has a default but an "off" one (None, False,
0, empty) of an optional switch: params.yaml states every value a stage runs with.

This package must not import Keras (nor TensorFlow, NumPy, MLflow, albumentations): the backend
is chosen from these params before Keras is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from pipeline.errors import UserError, choices_hint
from pipeline.params.augment import Augment, Transform
from pipeline.params.checks import check, same_labels
from pipeline.params.common import PARAMS_FILE, Fraction, Runtime, Splits, Strict, Tracking
from pipeline.params.datasets import (
    DATASET_SOURCES,
    MOTION_CLASSES,
    SEGMENTATION_SOURCES,
    SENSOR_KEYS,
    SHAPE_CLASSES,
    SPECTRA_CLASSES,
    TEXTURE_PHOTOS,
    TRACK_CLASSES,
    Adu,
    AnyDataset,
    Count,
    Dataset,
    DatasetBase,
    FolderDataset,
    GeneratedDataset,
    LfwDataset,
    MotionDataset,
    Pixels,
    SegFolderDataset,
    ShapesDataset,
    SpectraDataset,
    Steps,
    TexturesDataset,
    TracksDataset,
    generator_module,
)
from pipeline.params.gans import CycleganParams, DcganParams, Filters, GanParams
from pipeline.params.lecture import LearningCurve, Lecture
from pipeline.params.messages import describe
from pipeline.params.models import (
    ARCHITECTURES,
    BACKBONES,
    AnyModel,
    ClassifierParams,
    CnnParams,
    FilterNetParams,
    MlpParams,
    Model,
    SegmentationParams,
    TrainParams,
    TransferParams,
    UnetParams,
    arch_kwargs,
)
from pipeline.params.sweeps import Sweep, check_sweeps
from pipeline.params.verify import Verify

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "DATASET_SOURCES",
    "MOTION_CLASSES",
    "PARAMS_FILE",
    "SEGMENTATION_SOURCES",
    "SENSOR_KEYS",
    "SHAPE_CLASSES",
    "SPECTRA_CLASSES",
    "TEXTURE_PHOTOS",
    "TRACK_CLASSES",
    "Adu",
    "Augment",
    "ClassifierParams",
    "CnnParams",
    "Count",
    "CycleganParams",
    "Dataset",
    "DatasetBase",
    "DcganParams",
    "FilterNetParams",
    "Filters",
    "FolderDataset",
    "Fraction",
    "GanParams",
    "GeneratedDataset",
    "LearningCurve",
    "Lecture",
    "LfwDataset",
    "MlpParams",
    "Model",
    "MotionDataset",
    "Params",
    "Pixels",
    "Runtime",
    "SegFolderDataset",
    "SegmentationParams",
    "ShapesDataset",
    "SpectraDataset",
    "Splits",
    "Steps",
    "Strict",
    "Sweep",
    "TexturesDataset",
    "Tracking",
    "TracksDataset",
    "TrainParams",
    "TransferParams",
    "Transform",
    "UnetParams",
    "Verify",
    "arch_kwargs",
    "generator_module",
    "load",
    "parse",
    "same_labels",
]


class Params(Strict):
    seed: int = Field(ge=0, le=2**31 - 1)
    runtime: Runtime
    tracking: Tracking
    datasets: dict[str, AnyDataset]
    augment: dict[str, Augment]
    models: dict[str, AnyModel]
    lecture: Lecture
    dcgans: dict[str, DcganParams] = Field(default_factory=dict)  # empty: no DCGAN
    cyclegans: dict[str, CycleganParams] = Field(default_factory=dict)  # empty: no CycleGAN
    sweeps: dict[str, Sweep] = Field(default_factory=dict)  # empty: no Ray Tune search
    verify: Verify | None = None  # none: `make verify` has no tolerances to judge by

    @field_validator("datasets", "models")
    @classmethod
    def _not_empty(cls, value: dict) -> dict:
        if not value:
            raise ValueError("must name at least one entry")
        return value

    def dataset(self, name: str) -> Dataset:
        return _entry(self.datasets, "datasets", name)

    def model(self, name: str) -> Model:
        return _entry(self.models, "models", name)

    def gan(self, name: str) -> DcganParams | CycleganParams:
        """A dcgans or cyclegans entry by name (names are unique across both)."""
        return _entry({**self.dcgans, **self.cyclegans}, "dcgans/cyclegans", name)

    def augment_for(self, dataset: str) -> Augment:
        self.dataset(dataset)
        return self.augment[dataset]  # check() made sure every dataset has one


def _entry(section: dict, section_name: str, name: str) -> Any:
    if name not in section:
        raise UserError(
            f"{section_name}.{name}: no such entry in {PARAMS_FILE}; {choices_hint(name, section)}"
        )
    return section[name]


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml; any mistake raises one UserError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (run from the repository root, where params.yaml is)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    return parse(raw, source=str(path))


def parse(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Check a params mapping (YAML merge keys already resolved) as a whole: entries, then references."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(describe(exc, Params, source)) from None
    check(params, source)
    check_sweeps(params, source)
    return params
