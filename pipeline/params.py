"""Typed schema of params.yaml and `load()`, which checks the whole file before any work starts.

Datasets are chosen by their `source`, models by their `architecture`; each kind has its own
strict class, so an unknown key is caught with the valid keys of that very kind. This module
must not import Keras: the backend is chosen from these params before Keras is imported.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import UserError, choices_hint, closest

PARAMS_FILE = "params.yaml"
SHAPE_CLASSES = ("angle", "line", "cross", "ring", "noise")
TRACK_CLASSES = ("background", "muon", "alpha", "beta")  # mask values 0..3 of the tracks source
SPECTRA_CLASSES = ("peak", "doublet", "broad", "shoulder", "edge")
MOTION_CLASSES = ("left", "right", "up", "down")
Fraction = typing.Annotated[float, Field(gt=0.0, lt=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- top-level sections


class Runtime(Strict):
    backend: Literal["tensorflow", "jax"] = "tensorflow"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    deterministic: bool = True
    mixed_precision: bool = False
    jit_compile: bool = False
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    workers: int = Field(1, ge=1, le=64)
    verbose: Literal[0, 1, 2] = 1


class Tracking(Strict):
    uri: str | None = None
    experiment: str = Field("convpipe", min_length=1)


# ---------------------------------------------------------------- datasets


class Splits(Strict):
    """What every dataset has, images or not: how it is split."""

    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15

    @model_validator(mode="after")
    def _train_left(self) -> Splits:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 0.1 for training")
        return self

    def spatial_dims(self) -> int | None:
        """1 for sequences, 2 for images, 3 for videos; None where a source does not say."""
        return None


class DatasetBase(Splits):
    image_size: int = Field(32, ge=8, le=1024)

    def spatial_dims(self) -> int | None:
        return 2


class ShapesDataset(DatasetBase):
    """Our seeded generator: one drawn figure per grayscale image."""

    source: Literal["shapes"]
    # Below 12 pixels an angle's two arms may not fit, and its '/' arm could be cut under 5 pixels.
    image_size: int = Field(32, ge=12, le=1024)
    classes: list[Literal["angle", "line", "cross", "ring", "noise"]] = list(SHAPE_CLASSES)
    positive: Literal["angle", "line", "cross", "ring", "noise"] | None = None
    per_class: int = Field(400, ge=4, le=1_000_000)
    noise: float = Field(0.05, ge=0.0, le=0.5)
    min_intensity: float = Field(0.6, gt=0.0, le=1.0)
    max_stroke: int = Field(2, ge=1, le=8)
    # random: anywhere in the image (the lecture's translation task); centered: bounding box centred
    placement: Literal["random", "centered"] = "random"

    @model_validator(mode="after")
    def _classes_ok(self) -> ShapesDataset:
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError("classes must name at least two different classes")
        if self.positive is not None and self.positive not in self.classes:
            raise ValueError(f"positive '{self.positive}' is not one of classes {self.classes}")
        return self


class FolderDataset(DatasetBase):
    """A user's folder laid out as root/<class>/<image>."""

    source: Literal["folder"]
    path: str
    channels: Literal[1, 3] = 3
    resize: Literal["stretch", "pad", "crop"] = "stretch"
    classes: list[str] | None = None


class SegFolderDataset(DatasetBase):
    """A user's segmentation folder: root/images/<stem>.* with root/masks/<stem>.png of class ids."""

    source: Literal["seg_folder"]
    path: str
    classes: dict[str, typing.Annotated[int, Field(ge=0, le=255)]]
    background: str | None = "background"
    channels: Literal[1, 3] = 3
    resize: Literal["stretch", "pad", "crop"] = "stretch"

    @model_validator(mode="after")
    def _classes_ok(self) -> SegFolderDataset:
        if len(self.classes) < 2:
            raise ValueError("classes must map at least two class names to mask values")
        values = list(self.classes.values())
        if len(set(values)) != len(values):
            raise ValueError(f"classes map two names to one mask value: {self.classes}")
        if self.background is not None and self.background not in self.classes:
            raise ValueError(
                f"background '{self.background}' is not one of classes {list(self.classes)}; "
                "name the class that is not an object, or null"
            )
        return self


def _range_ok(value: tuple, what: str) -> tuple:
    if value[0] > value[1]:
        raise ValueError(f"{what} [min, max] needs min <= max")
    return value


Count = typing.Annotated[int, Field(ge=0, le=100)]
Adu = typing.Annotated[float, Field(ge=0.0, le=255.0)]
Pixels = typing.Annotated[float, Field(gt=0.0, le=100.0)]
Steps = typing.Annotated[int, Field(ge=2, le=1000)]


class TracksDataset(DatasetBase):
    """Our seeded CCD frames with particle tracks, for segmentation (pipeline.data.tracks).

    Intensities are in ADU of the 8-bit frame (0..255); ranges are [min, max], inclusive.
    """

    source: Literal["tracks"]
    image_size: int = Field(64, ge=16, le=1024)
    frames: int = Field(400, ge=4, le=1_000_000)
    muons: tuple[Count, Count] = (0, 2)
    alphas: tuple[Count, Count] = (0, 2)
    betas: tuple[Count, Count] = (0, 4)
    muon_intensity: Adu = 80.0
    alpha_intensity: Adu = 250.0
    beta_intensity: Adu = 30.0
    alpha_size: tuple[Pixels, Pixels] = (1.0, 1.8)
    beta_length: tuple[Steps, Steps] = (8, 24)
    beta_curl: float = Field(0.5, ge=0.0, le=3.14)
    bias: Adu = 10.0
    dark_current: Adu = 1.0
    read_noise: Adu = 4.0
    hot_pixels: Count = 3
    mask_threshold: float = Field(8.0, gt=0.0, le=255.0)
    render: Literal["ccd", "clean"] = "ccd"  # clean: tracks only, from other random streams (unpaired)

    @model_validator(mode="after")
    def _ranges_ok(self) -> TracksDataset:
        for key in ("muons", "alphas", "betas", "alpha_size", "beta_length"):
            _range_ok(getattr(self, key), key)
        return self


class SpectraDataset(Splits):
    """Our seeded 1D generator: histograms (counts per bin) whose peaks tell the classes apart."""

    source: Literal["spectra"]
    classes: list[Literal["peak", "doublet", "broad", "shoulder", "edge"]] = list(SPECTRA_CLASSES)
    per_class: int = Field(300, ge=4, le=1_000_000)
    length: int = Field(128, ge=32, le=65_536)
    counts: int = Field(120, ge=5, le=255)

    def spatial_dims(self) -> int | None:
        return 1

    @model_validator(mode="after")
    def _classes_ok(self) -> SpectraDataset:
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError("classes must name at least two different classes")
        return self


class MotionDataset(DatasetBase):
    """Our seeded video generator: a blob moving in one direction, the class; no frame alone shows it."""

    source: Literal["motion"]
    image_size: int = Field(16, ge=8, le=512)
    classes: list[Literal["left", "right", "up", "down"]] = list(MOTION_CLASSES)
    per_class: int = Field(250, ge=4, le=1_000_000)
    frames: int = Field(8, ge=2, le=256)
    speed: float = Field(1.5, gt=0.0, le=16.0)
    noise: float = Field(0.1, ge=0.0, le=0.5)
    frame: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _classes_ok(self) -> MotionDataset:
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError("classes must name at least two different classes")
        if self.frame is not None and self.frame >= self.frames:
            raise ValueError(
                f"frame {self.frame} is not one of the {self.frames} frames (0..{self.frames - 1})"
            )
        return self

    def spatial_dims(self) -> int | None:
        return 3 if self.frame is None else 2


class LfwDataset(DatasetBase):
    """scikit-image's `lfw_subset`: 100 face and 100 non-face 25x25 grayscale crops of real photos."""

    source: Literal["lfw"]
    image_size: int = Field(25, ge=8, le=1024)  # 25 is the crops' own size; others are resized


DATASET_SOURCES: dict[str, type[Splits]] = {
    "shapes": ShapesDataset,
    "folder": FolderDataset,
    "tracks": TracksDataset,
    "seg_folder": SegFolderDataset,
    "spectra": SpectraDataset,
    "motion": MotionDataset,
    "lfw": LfwDataset,
}
Dataset = (
    ShapesDataset
    | FolderDataset
    | TracksDataset
    | SegFolderDataset
    | SpectraDataset
    | MotionDataset
    | LfwDataset
)


# ---------------------------------------------------------------- augmentation


class Transform(Strict):
    name: str
    p: float = Field(0.5, ge=0.0, le=1.0)
    args: dict[str, Any] = {}


class Augment(Strict):
    copies: int = Field(1, ge=0, le=100)
    transforms: list[Transform] = []
    preview: int = Field(8, ge=1, le=64)


# ---------------------------------------------------------------- models


class TrainParams(Strict):
    """What every trainable model has: its data and how it is fitted."""

    dataset: str
    architecture: str
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1, le=65_536)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    early_stopping: int = Field(0, ge=0, le=10_000)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # At least one shift: evaluate reports the drop from the smallest to the largest.
    shifts: list[typing.Annotated[int, Field(ge=0)]] = Field([0, 2, 4, 6, 8], min_length=1)


class FilterNetParams(TrainParams):
    architecture: Literal["filter_net"]
    kernel_size: int = Field(3, ge=1, le=31)


class MlpParams(TrainParams):
    architecture: Literal["mlp"]
    hidden: list[typing.Annotated[int, Field(ge=1)]] = [128, 64]
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class CnnParams(TrainParams):
    architecture: Literal["cnn"]
    filters: list[typing.Annotated[int, Field(ge=1)]] = Field([16, 32, 64], min_length=1)
    kernel_size: int = Field(3, ge=1, le=31)
    strides: int = Field(1, ge=1, le=8)
    padding: Literal["same", "valid"] = "same"
    pool_size: int = Field(2, ge=1, le=8)
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    head: Literal["global_avg", "global_max", "flatten"] = "global_avg"
    dense: list[typing.Annotated[int, Field(ge=1)]] = []
    dims: Literal[1, 2, 3] = 2


class SegmentationParams(TrainParams):
    """What every segmentation model has: its loss and how objects are counted at evaluation."""

    loss: dict[Literal["cross_entropy", "dice", "focal"], typing.Annotated[float, Field(ge=0.0)]] = {
        "cross_entropy": 1.0
    }
    class_weights: Literal["balanced"] | list[typing.Annotated[float, Field(gt=0.0)]] | None = None
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0)
    min_component: int = Field(1, ge=1, le=100_000)

    @field_validator("loss")
    @classmethod
    def _some_loss(cls, value: dict) -> dict:
        if not any(value.values()):
            raise ValueError("give at least one loss term a weight > 0 (cross_entropy, dice, focal)")
        return value


class UnetParams(SegmentationParams):
    architecture: Literal["unet"]
    depth: int = Field(3, ge=1, le=8)
    filters: int = Field(16, ge=1, le=1024)
    kernel_size: int = Field(3, ge=1, le=15)
    decoder: Literal["transpose", "upsample"] = "transpose"
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50")


class TransferParams(TrainParams):
    """An ImageNet backbone plus a new head; phase 1 trains the head (epochs, lr), phase 2 fine-tunes."""

    # Read by the two-phase fit, not by the builder.
    FIT_FIELDS: typing.ClassVar[tuple[str, ...]] = ("fine_tune_epochs", "fine_tune_layers", "fine_tune_lr")

    architecture: Literal["transfer"]
    backbone: Literal[BACKBONES] = "efficientnet_lite0"
    weights: str | None = "imagenet"
    input_size: int = Field(96, ge=32, le=1024)
    pooling: Literal["avg", "max"] = "avg"
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    fine_tune_epochs: int = Field(0, ge=0, le=10_000)
    fine_tune_layers: int = Field(10, ge=1, le=10_000)
    fine_tune_lr: float = Field(1e-4, gt=0.0, le=10.0)

    @field_validator("weights")
    @classmethod
    def _weights_ok(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give imagenet, null (random initialisation) or the path of a weights file")
        return value


# Keep in step with pipeline.models.BUILDERS (a test checks both name the same architectures).
ARCHITECTURES: dict[str, type[TrainParams]] = {
    "filter_net": FilterNetParams,
    "mlp": MlpParams,
    "cnn": CnnParams,
    "unet": UnetParams,
    "transfer": TransferParams,
}
SEGMENTATION_SOURCES = (TracksDataset, SegFolderDataset)  # datasets whose labels are masks


def arch_kwargs(model: TrainParams) -> dict[str, Any]:
    """The builder's keyword hyperparameters: everything but the training fields."""
    shared = SegmentationParams if isinstance(model, SegmentationParams) else TrainParams
    skip = set(shared.model_fields) | set(getattr(model, "FIT_FIELDS", ()))
    return {k: v for k, v in model.model_dump().items() if k not in skip}


# ---------------------------------------------------------------- generative models

Filters = typing.Annotated[
    list[typing.Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=6)
]


class GanParams(Strict):
    """What both GAN families have: their data, how long they train, the two optimizers (Adam)."""

    dataset: str
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    g_lr: float = Field(2e-4, gt=0.0, le=1.0)
    d_lr: float = Field(2e-4, gt=0.0, le=1.0)
    beta_1: float = Field(0.5, ge=0.0, lt=1.0)
    grid: int = Field(8, ge=1, le=32)


class DcganParams(GanParams):
    """A DCGAN on one classification dataset; `classifier` (a model on that dataset, or on one with the
    same classes: see _same_labels) judges its samples."""

    classifier: str
    conditional: bool = True
    latent_dim: int = Field(64, ge=1, le=4096)
    generator_filters: Filters = [128, 64]
    discriminator_filters: Filters = [64, 128]
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=0.5)
    instance_noise: float = Field(0.1, ge=0.0, le=2.0)
    upsampling: Literal["transpose", "upsample"] = "transpose"
    aux_classifier_weight: float = Field(0.0, ge=0.0, le=100.0)
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _aux_needs_labels(self) -> DcganParams:
        if self.aux_classifier_weight and not self.conditional:
            raise ValueError(
                "aux_classifier_weight: the auxiliary class head needs conditional: true "
                "(the generator must know which class to draw); valid: 0 or conditional: true"
            )
        return self


class CycleganParams(GanParams):
    """A CycleGAN between two image datasets of the same shape: `dataset` (domain a) and `target` (b)."""

    target: str
    filters: int = Field(16, ge=1, le=1024)
    downsamplings: int = Field(2, ge=0, le=6)
    residual_blocks: int = Field(3, ge=0, le=32)
    discriminator_filters: int = Field(16, ge=1, le=1024)
    discriminator_layers: int = Field(3, ge=1, le=6)
    cycle_weight: float = Field(10.0, ge=0.0, le=1000.0)
    identity_weight: float = Field(5.0, ge=0.0, le=1000.0)


# ---------------------------------------------------------------- the lecture's figures


class Lecture(Strict):
    """Figures of the lecture in reports/lecture/; a model set to null (the default) skips its figure."""

    filter_model: str | None = None
    feature_model: str | None = None
    feature_images: int = Field(3, ge=1, le=16)
    feature_channels: int = Field(8, ge=1, le=64)


# ---------------------------------------------------------------- the whole file


class Params(Strict):
    seed: int = Field(42, ge=0, le=2**31 - 1)
    runtime: Runtime = Runtime()
    tracking: Tracking = Tracking()
    datasets: dict[str, Dataset]
    augment: dict[str, Augment] = {}
    models: dict[str, TrainParams]
    lecture: Lecture = Lecture()
    dcgans: dict[str, DcganParams] = {}
    cyclegans: dict[str, CycleganParams] = {}

    @field_validator("datasets", "models")
    @classmethod
    def _not_empty(cls, value: dict) -> dict:
        if not value:
            raise ValueError("must name at least one entry")
        return value

    def dataset(self, name: str) -> Dataset:
        return _entry(self.datasets, "datasets", name)

    def model(self, name: str) -> TrainParams:
        return _entry(self.models, "models", name)

    def gan(self, name: str) -> DcganParams | CycleganParams:
        """A dcgans or cyclegans entry by name (names are unique across both)."""
        return _entry({**self.dcgans, **self.cyclegans}, "dcgans/cyclegans", name)

    def augment_for(self, dataset: str) -> Augment:
        self.dataset(dataset)
        return self.augment.get(dataset, Augment(copies=0))


def _entry(section: dict, section_name: str, name: str) -> Any:
    if name not in section:
        raise UserError(
            f"{section_name}.{name}: no such entry in {PARAMS_FILE}; {choices_hint(name, section)}"
        )
    return section[name]


# ---------------------------------------------------------------- loading and error messages


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
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level")
    data = dict(raw)
    data["datasets"] = _dispatch(raw, "datasets", "source", DATASET_SOURCES, source)
    data["models"] = _dispatch(raw, "models", "architecture", ARCHITECTURES, source)
    data = {k: v for k, v in data.items() if k in raw}  # a missing section is reported as missing
    try:
        params = Params.model_validate(data)
    except ValidationError as exc:
        raise UserError(_describe(exc, Params, (), source)) from None
    _check_references(params, source)
    return params


def _dispatch(raw: dict, section: str, tag: str, kinds: dict[str, type[Strict]], source: str) -> Any:
    """Validate each entry of a named section with the class its tag picks."""
    entries = raw.get(section)
    if not isinstance(entries, dict):
        return entries  # the top-level validation reports the missing or ill-typed section
    out = {}
    for name, entry in entries.items():
        where = (section, str(name))
        if not isinstance(entry, dict):
            raise UserError(f"{source}: {section}.{name}: expected a mapping with a '{tag}' key")
        kind = entry.get(tag)
        if kind not in kinds:
            what = "missing" if kind is None else f"unknown {tag} '{kind}'"
            raise UserError(f"{source}: {section}.{name}.{tag}: {what}; {choices_hint(str(kind), kinds)}")
        try:
            out[name] = kinds[kind].model_validate(entry)
        except ValidationError as exc:
            raise UserError(_describe(exc, kinds[kind], where, source)) from None
    return out


def _check_references(params: Params, source: str) -> None:
    for name, model in params.models.items():
        if model.dataset not in params.datasets:
            raise UserError(
                f"{source}: models.{name}.dataset: no dataset '{model.dataset}'; "
                f"{choices_hint(model.dataset, params.datasets)}"
            )
        _check_task(name, model, params.datasets[model.dataset], source)
    for name in params.augment:
        if name not in params.datasets:
            raise UserError(
                f"{source}: augment.{name}: no dataset of that name; {choices_hint(name, params.datasets)}"
            )
    for name in params.datasets:
        if name not in params.augment:
            raise UserError(
                f"{source}: augment.{name}: missing; every dataset needs an augment entry "
                f"(copies: 0 and transforms: [] turn augmentation off)"
            )
    _check_dims(params, source)
    _check_lecture(params, source)
    _check_gans(params, source)
    # Transform names and arguments are checked against albumentations by pipeline.data.augment.


def _check_task(name: str, model: TrainParams, ds: DatasetBase, source: str) -> None:
    """A classifier needs a labelled dataset, a segmentation model a dataset with masks."""
    seg_model = isinstance(model, SegmentationParams)
    seg_data = isinstance(ds, SEGMENTATION_SOURCES)
    if seg_model != seg_data:
        fitting = sorted(a for a, c in ARCHITECTURES.items() if issubclass(c, SegmentationParams) == seg_data)
        task = "segmentation (masks)" if seg_data else "classification (labels)"
        raise UserError(
            f"{source}: models.{name}.architecture: '{model.architecture}' does not fit dataset "
            f"'{model.dataset}', which is for {task}; valid: {', '.join(fitting)}"
        )
    if seg_model and isinstance(model.class_weights, list):
        classes = len(ds.classes) if isinstance(ds, SegFolderDataset) else len(TRACK_CLASSES)
        if len(model.class_weights) != classes:
            raise UserError(
                f"{source}: models.{name}.class_weights: {len(model.class_weights)} weights for "
                f"{classes} classes of dataset '{model.dataset}'; give one per class, 'balanced' or null"
            )


def _check_dims(params: Params, source: str) -> None:
    """A model's convolutions must have as many spatial axes as its dataset's rows."""
    kinds = {1: "sequences", 2: "images", 3: "videos"}
    for name, model in params.models.items():
        data = params.datasets[model.dataset].spatial_dims()
        wanted = getattr(model, "dims", 2 if model.architecture == "filter_net" else None)
        if data is None or wanted is None or data == wanted:
            continue
        if model.architecture == "filter_net":
            raise UserError(
                f"{source}: models.{name}.architecture: filter_net scans images, but "
                f"datasets.{model.dataset} holds {kinds[data]}; use a cnn with dims: {data}"
            )
        raise UserError(
            f"{source}: models.{name}.dims: {wanted}, but datasets.{model.dataset} holds {kinds[data]}; "
            f"set dims: {data}"
        )


def _check_lecture(params: Params, source: str) -> None:
    """The lecture's figures need a filter_net (one 2D filter) and a 2D cnn (image feature maps)."""
    wanted = {"filter_model": ("filter_net", "a filter_net"), "feature_model": ("cnn", "a 2D cnn")}
    for key, (architecture, description) in wanted.items():
        name = getattr(params.lecture, key)
        fits = [
            n
            for n, m in params.models.items()
            if m.architecture == architecture and getattr(m, "dims", 2) == 2
        ]
        if name is not None and name not in fits:
            raise UserError(
                f"{source}: lecture.{key}: '{name}' is not {description} in models; "
                f"valid: {', '.join(fits) or '(none)'}, or null to skip this figure"
            )


def _check_gans(params: Params, source: str) -> None:
    """GANs train on images; a DCGAN's classifier is a 2D classifier of its own dataset; names are
    unique, since every entry of models, datasets and GANs writes reports/<name>/."""
    taken = {**{n: "datasets" for n in params.datasets}, **{n: "models" for n in params.models}}
    for section in ("dcgans", "cyclegans"):
        for name, gan in getattr(params, section).items():
            if name in taken:
                raise UserError(
                    f"{source}: {section}.{name}: the name is taken by {taken[name]}.{name} "
                    f"(both would write reports/{name}/); rename one"
                )
            taken[name] = section
            keys = ("dataset", "target") if section == "cyclegans" else ("dataset",)
            for key in keys:
                ds_name = getattr(gan, key)
                ds = params.datasets.get(ds_name)
                if ds is None:
                    raise UserError(
                        f"{source}: {section}.{name}.{key}: no dataset '{ds_name}'; "
                        f"{choices_hint(ds_name, params.datasets)}"
                    )
                if ds.spatial_dims() != 2:
                    images = [n for n, d in params.datasets.items() if d.spatial_dims() == 2]
                    raise UserError(
                        f"{source}: {section}.{name}.{key}: dataset '{ds_name}' does not hold images; "
                        f"valid: {', '.join(images)}"
                    )
            if section == "dcgans":
                _check_classifier(params, name, gan, source)


def _check_classifier(params: Params, name: str, gan: DcganParams, source: str) -> None:
    if isinstance(params.datasets[gan.dataset], SEGMENTATION_SOURCES):
        raise UserError(
            f"{source}: dcgans.{name}.dataset: '{gan.dataset}' is a segmentation dataset; "
            "a DCGAN needs class labels"
        )
    fits = [
        n
        for n, m in params.models.items()
        if _same_labels(params, m.dataset, gan.dataset)
        and not isinstance(m, SegmentationParams)
        and getattr(m, "dims", 2) == 2
    ]
    if gan.classifier not in fits:
        raise UserError(
            f"{source}: dcgans.{name}.classifier: '{gan.classifier}' is not a 2D classifier in models "
            f"trained on dataset '{gan.dataset}' or on one drawing the same classes; "
            f"valid: {', '.join(fits) or '(none)'}"
        )


def _same_labels(params: Params, a: str, b: str) -> bool:
    """Whether label i of dataset a means what it means in b: the same dataset, or two shapes datasets
    drawing the same classes in the same order at the same size (placement may differ: a CNN trained
    on figures anywhere judges centred ones; gan_evaluate reports its accuracy on them)."""
    if a == b:
        return True
    da, db = params.datasets.get(a), params.datasets.get(b)
    shapes = isinstance(da, ShapesDataset) and isinstance(db, ShapesDataset)
    return (
        shapes
        and da.positive is None
        and db.positive is None
        and da.classes == db.classes
        and da.image_size == db.image_size
    )


def _describe(exc: ValidationError, root: type[BaseModel], prefix: tuple, source: str) -> str:
    """One line for the first error: the dotted key, what is wrong, and what would be valid."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(str(p) for p in err["loc"])
    # Pydantic puts the chosen union member's name into the path; users never wrote it.
    kinds = {c.__name__ for c in DATASET_SOURCES.values()}
    loc = tuple(p for p in loc if p not in kinds and "[" not in p)
    key = ".".join(prefix + loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        valid = _fields_at(root, loc[:-1])
        hint = f"; valid keys: {', '.join(valid)}{closest(loc[-1], valid)}" if valid else ""
        return f"{source}: {key}: unknown key{hint}{more}"
    if err["type"] == "missing":
        return f"{source}: {key}: required key is missing{more}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error" and "input" in err:
        options = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        choices = [o.strip() for o in options.replace(" or ", ",").split(",") if o.strip()]
        msg = f"got {err['input']!r}; {choices_hint(str(err['input']), choices)}"
    elif "input" in err and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return f"{source}: {key or '(top level)'}: {msg}{more}"


def _fields_at(cls: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """Field names of the strict class found by walking `loc` down from `cls` (best effort)."""
    current: Any = cls
    for part in loc:
        current = _strip_optional(current)
        if typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]  # `part` is an index or a key
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _strip_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _strip_optional(annotation: Any) -> Any:
    """X for X | None; anything else unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
