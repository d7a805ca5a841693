"""The `lecture:` section: which trained models the lecture's figures show."""

from __future__ import annotations

from pydantic import Field

from pipeline.params.common import Strict


class Lecture(Strict):
    """Figures of the lecture in reports/lecture/; a model set to null skips its figure."""

    filter_model: str | None
    feature_model: str | None
    feature_images: int = Field(ge=1, le=16)
    feature_channels: int = Field(ge=1, le=64)
