"""The `datasets:` section: one strict class per `source`, picked by that key.

Every dataset names in `path` what its prepare stage reads, a DVC dependency of that stage: a
user's folder, or for the data we generate (or a package ships) the module that makes it.
"""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, model_validator

from pipeline.params.common import Splits, key_error

SHAPE_CLASSES = ("angle", "line", "cross", "ring", "noise")
TRACK_CLASSES = ("background", "muon", "alpha", "beta")  # mask values 0..3 of the tracks source
SPECTRA_CLASSES = ("peak", "doublet", "broad", "shoulder", "edge")
MOTION_CLASSES = ("left", "right", "up", "down")
# The textures source's classes: grayscale photographs scikit-image ships, (height, width) pixels.
TEXTURE_PHOTOS = {
    "brick": (512, 512),
    "grass": (512, 512),
    "gravel": (512, 512),
    "moon": (512, 512),
    "cell": (660, 550),
}

ShapeClass = Literal["angle", "line", "cross", "ring", "noise"]
Resize = Literal["stretch", "pad", "crop"]
Channels = Literal[1, 3]


def generator_module(source: str) -> str:
    """The module that makes the data of a generated (or package-shipped) source."""
    return f"pipeline/data/{source}.py"


def _distinct_classes(classes: list) -> None:
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError("classes must name at least two different classes")


class DatasetBase(Splits):
    """What every dataset entry has: its kind and what its prepare stage reads."""

    source: str
    path: str = Field(min_length=1)

    def spatial_dims(self) -> int | None:
        return 2


class GeneratedDataset(DatasetBase):
    """Data our code makes (or a package ships): `path` is that module, so editing it reruns prepare."""

    @model_validator(mode="after")
    def _path_is_the_generator(self) -> GeneratedDataset:
        module = generator_module(self.source)
        if self.path != module:
            raise key_error("path", f"a {self.source} dataset is made by {module}; valid: {module}")
        return self


class ShapesDataset(GeneratedDataset):
    """Our seeded generator: one drawn figure per grayscale image."""

    source: Literal["shapes"]
    # Below 12 pixels an angle's two arms may not fit, and its '/' arm could be cut under 5 pixels.
    image_size: int = Field(ge=12, le=1024)
    classes: list[ShapeClass]
    positive: ShapeClass | None = None  # None: one class per figure; else this figure against the rest
    per_class: int = Field(ge=4, le=1_000_000)
    noise: float = Field(ge=0.0, le=0.5)
    min_intensity: float = Field(gt=0.0, le=1.0)
    max_stroke: int = Field(ge=1, le=8)
    # random: anywhere in the image (the lecture's translation task); centered: bounding box centred
    placement: Literal["random", "centered"]

    @model_validator(mode="after")
    def _classes_ok(self) -> ShapesDataset:
        _distinct_classes(self.classes)
        if self.positive is not None and self.positive not in self.classes:
            raise ValueError(f"positive '{self.positive}' is not one of classes {self.classes}")
        return self


class FolderDataset(DatasetBase):
    """A user's folder laid out as path/<class>/<image>."""

    source: Literal["folder"]
    image_size: int = Field(ge=8, le=1024)
    channels: Channels
    resize: Resize
    classes: list[str] | None = None  # None: every subfolder is a class


class SegFolderDataset(DatasetBase):
    """A user's segmentation folder: path/images/<stem>.* with path/masks/<stem>.png of class ids."""

    source: Literal["seg_folder"]
    image_size: int = Field(ge=8, le=1024)
    classes: dict[str, typing.Annotated[int, Field(ge=0, le=255)]]
    background: str | None  # the class that is not an object; None: every class is one
    channels: Channels
    resize: Resize

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
SENSOR_KEYS = ("bias", "dark_current", "read_noise", "hot_pixels")  # what render: clean leaves out


class TracksDataset(GeneratedDataset):
    """Our seeded CCD frames with particle tracks, for segmentation (pipeline.data.tracks).

    Intensities are in ADU of the 8-bit frame (0..255); ranges are [min, max], inclusive. The sensor
    keys are given with render: ccd only: a clean rendering draws the tracks alone.
    """

    source: Literal["tracks"]
    image_size: int = Field(ge=16, le=1024)
    frames: int = Field(ge=4, le=1_000_000)
    render: Literal["ccd", "clean"]  # clean: tracks only, from other random streams (unpaired)
    muons: tuple[Count, Count]
    alphas: tuple[Count, Count]
    betas: tuple[Count, Count]
    muon_intensity: Adu
    alpha_intensity: Adu
    beta_intensity: Adu
    alpha_size: tuple[Pixels, Pixels]
    beta_length: tuple[Steps, Steps]
    beta_curl: float = Field(ge=0.0, le=3.14)
    mask_threshold: float = Field(gt=0.0, le=255.0)
    bias: Adu | None = None
    dark_current: Adu | None = None
    read_noise: Adu | None = None
    hot_pixels: Count | None = None

    @model_validator(mode="after")
    def _ranges_ok(self) -> TracksDataset:
        for key in ("muons", "alphas", "betas", "alpha_size", "beta_length"):
            _range_ok(getattr(self, key), key)
        # pipeline.data.tracks._sensor returns the clean signal before it reads any sensor key.
        if self.render == "ccd":
            self._require(SENSOR_KEYS, "with render: ccd (the sensor's frames)")
        else:
            self._refuse(SENSOR_KEYS, "with render: clean (no sensor is simulated)", "set render: ccd")
        return self


class SpectraDataset(GeneratedDataset):
    """Our seeded 1D generator: histograms (counts per bin) whose peaks tell the classes apart."""

    source: Literal["spectra"]
    classes: list[Literal["peak", "doublet", "broad", "shoulder", "edge"]]
    per_class: int = Field(ge=4, le=1_000_000)
    length: int = Field(ge=32, le=65_536)
    counts: int = Field(ge=5, le=255)

    def spatial_dims(self) -> int | None:
        return 1

    @model_validator(mode="after")
    def _classes_ok(self) -> SpectraDataset:
        _distinct_classes(self.classes)
        return self


class MotionDataset(GeneratedDataset):
    """Our seeded video generator: a blob moving in one direction, the class; no frame alone shows it."""

    source: Literal["motion"]
    image_size: int = Field(ge=8, le=512)
    classes: list[Literal["left", "right", "up", "down"]]
    per_class: int = Field(ge=4, le=1_000_000)
    frames: int = Field(ge=2, le=256)
    speed: float = Field(gt=0.0, le=16.0)
    noise: float = Field(ge=0.0, le=0.5)
    frame: int | None = Field(None, ge=0)  # None: whole videos; k: frame k of each, as an image

    @model_validator(mode="after")
    def _classes_ok(self) -> MotionDataset:
        _distinct_classes(self.classes)
        if self.frame is not None and self.frame >= self.frames:
            raise ValueError(
                f"frame {self.frame} is not one of the {self.frames} frames (0..{self.frames - 1})"
            )
        return self

    def spatial_dims(self) -> int | None:
        return 3 if self.frame is None else 2


class LfwDataset(GeneratedDataset):
    """scikit-image's `lfw_subset`: 100 face and 100 non-face 25x25 grayscale crops of real photos."""

    source: Literal["lfw"]
    image_size: int = Field(ge=8, le=1024)  # 25 is the crops' own size; others are resized


class TexturesDataset(GeneratedDataset):
    """scikit-image's texture photographs cut into non-overlapping tiles, each lit afresh: materials
    told apart by their texture (pipeline/data/textures.py)."""

    source: Literal["textures"]
    classes: list[Literal[tuple(TEXTURE_PHOTOS)]]  # the photos' names, as scikit-image calls them
    image_size: int = Field(ge=8, le=256)  # the tiles' side: they are cut at the photos' own scale
    per_class: int = Field(ge=4, le=1_000_000)
    brightness: float = Field(ge=0.0, le=128.0)  # grey levels a tile's brightness moves, at most
    contrast: float = Field(ge=0.0, lt=1.0)  # a tile's contrast is scaled by 1 +- this, at most

    @model_validator(mode="after")
    def _classes_ok(self) -> TexturesDataset:
        _distinct_classes(self.classes)
        tiles = {
            c: (TEXTURE_PHOTOS[c][0] // self.image_size) * (TEXTURE_PHOTOS[c][1] // self.image_size)
            for c in self.classes
        }
        fewest = min(tiles, key=tiles.get)
        if self.per_class > tiles[fewest]:
            raise key_error(
                "per_class",
                f"{self.per_class}: the {fewest} photo has {tiles[fewest]} tiles of {self.image_size} px; "
                f"valid: 4..{tiles[fewest]} (or a smaller image_size)",
            )
        return self


DATASET_SOURCES: dict[str, type[DatasetBase]] = {
    "shapes": ShapesDataset,
    "folder": FolderDataset,
    "tracks": TracksDataset,
    "seg_folder": SegFolderDataset,
    "spectra": SpectraDataset,
    "motion": MotionDataset,
    "lfw": LfwDataset,
    "textures": TexturesDataset,
}
Dataset = (
    ShapesDataset
    | FolderDataset
    | TracksDataset
    | SegFolderDataset
    | SpectraDataset
    | MotionDataset
    | LfwDataset
    | TexturesDataset
)
AnyDataset = typing.Annotated[Dataset, Field(discriminator="source")]  # a `datasets:` entry
SEGMENTATION_SOURCES = (TracksDataset, SegFolderDataset)  # datasets whose labels are masks
