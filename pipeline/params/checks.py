"""Checks across sections, after each entry passed its own: references between entries, a model's
fit to its dataset (task and dimensions), the lecture's models and the GANs' datasets and names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import UserError, choices_hint
from pipeline.params.datasets import (
    SEGMENTATION_SOURCES,
    TRACK_CLASSES,
    DatasetBase,
    SegFolderDataset,
    ShapesDataset,
)
from pipeline.params.gans import DcganParams
from pipeline.params.lecture import ROTATION_INVARIANT
from pipeline.params.models import ARCHITECTURES, SegmentationParams, TrainParams

if TYPE_CHECKING:
    from pipeline.params import Params


def check(params: Params, source: str) -> None:
    """Raise one UserError for the first reference or fit that does not hold."""
    for name, model in params.models.items():
        if model.dataset not in params.datasets:
            raise UserError(
                f"{source}: models.{name}.dataset: no dataset '{model.dataset}'; "
                f"{choices_hint(model.dataset, params.datasets)}"
            )
        check_task(name, model, params.datasets[model.dataset], source)
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
    check_dims(params, source)
    check_lecture(params, source)
    check_gans(params, source)


def check_task(name: str, model: TrainParams, ds: DatasetBase, source: str) -> None:
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


def check_dims(params: Params, source: str) -> None:
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


def check_lecture(params: Params, source: str) -> None:
    """The lecture's figures need a filter_net (one 2D filter) and a 2D cnn (image feature maps); the
    symmetry experiments 2D classifiers of the same labels, the rotation one rotation-invariant classes."""
    check_symmetries(params, source)
    check_learning_curve(params, source)
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


def check_symmetries(params: Params, source: str) -> None:
    experiments = {"translation": params.lecture.translation, "rotation": params.lecture.rotation}
    for section, exp in experiments.items():
        if exp is None:
            continue
        names = {k: v for k, v in exp.model_dump().items() if k != "angles"}
        for key, name in names.items():
            model = params.models.get(name)
            if model is None or getattr(model, "dims", 2) != 2 or isinstance(model, SegmentationParams):
                fits = [n for n, m in params.models.items() if not isinstance(m, SegmentationParams)]
                raise UserError(
                    f"{source}: lecture.{section}.{key}: '{name}' is not a 2D classifier in models; "
                    f"{choices_hint(name, fits)}, or lecture.{section}: null to skip the experiment"
                )
            if not same_labels(params, model.dataset, params.models[exp.plain].dataset):
                raise UserError(
                    f"{source}: lecture.{section}.{key}: '{name}' classifies datasets.{model.dataset}, whose "
                    f"labels differ from those of {exp.plain}'s datasets.{params.models[exp.plain].dataset}"
                )
            ds = params.datasets[model.dataset]
            invariant = isinstance(ds, ShapesDataset) and set(ds.classes) <= set(ROTATION_INVARIANT)
            if section == "rotation" and not (invariant and ds.positive is None):
                raise UserError(
                    f"{source}: lecture.rotation.{key}: datasets.{model.dataset} must be a shapes dataset of "
                    f"rotation-invariant classes (some of {', '.join(ROTATION_INVARIANT)}; positive: null): "
                    f"a turn would change the label of others ('angle' is its '/' stroke)"
                )


def check_learning_curve(params: Params, source: str) -> None:
    """The dataset is a classification dataset of images; the pretrained side a transfer model with
    weights, the scratch side a 2D classifier without (both built for that dataset); the points are
    distinct and increasing."""
    curve = params.lecture.learning_curve
    if curve is None:
        return
    images = [
        n
        for n, d in params.datasets.items()
        if not isinstance(d, SEGMENTATION_SOURCES) and d.spatial_dims() == 2
    ]
    if curve.dataset not in images:
        raise UserError(
            f"{source}: lecture.learning_curve.dataset: '{curve.dataset}' is not a classification dataset "
            f"of images in datasets; {choices_hint(curve.dataset, images)}"
        )
    pretrained = [
        n for n, m in params.models.items() if m.architecture == "transfer" and m.weights is not None
    ]
    if curve.pretrained not in pretrained:
        raise UserError(
            f"{source}: lecture.learning_curve.pretrained: '{curve.pretrained}' is not a transfer model "
            f"with weights in models; {choices_hint(curve.pretrained, pretrained)}, "
            "or lecture.learning_curve: null"
        )
    scratch = [
        n
        for n, m in params.models.items()
        if not isinstance(m, SegmentationParams)
        and getattr(m, "dims", 2) == 2
        and getattr(m, "weights", None) is None
    ]
    if curve.scratch not in scratch:
        raise UserError(
            f"{source}: lecture.learning_curve.scratch: '{curve.scratch}' is not a 2D classifier without "
            f"pretrained weights in models; {choices_hint(curve.scratch, scratch)}"
        )
    if curve.per_class != sorted(set(curve.per_class)) or curve.per_class[0] < 1:
        raise UserError(
            f"{source}: lecture.learning_curve.per_class: {curve.per_class}; valid: distinct counts >= 1, "
            "increasing (e.g. [2, 4, 8, 16, 32]; the whole training split is always added)"
        )


def check_gans(params: Params, source: str) -> None:
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
                check_classifier(params, name, gan, source)


def check_classifier(params: Params, name: str, gan: DcganParams, source: str) -> None:
    if isinstance(params.datasets[gan.dataset], SEGMENTATION_SOURCES):
        raise UserError(
            f"{source}: dcgans.{name}.dataset: '{gan.dataset}' is a segmentation dataset; "
            "a DCGAN needs class labels"
        )
    fits = [
        n
        for n, m in params.models.items()
        if same_labels(params, m.dataset, gan.dataset)
        and not isinstance(m, SegmentationParams)
        and getattr(m, "dims", 2) == 2
    ]
    if gan.classifier not in fits:
        raise UserError(
            f"{source}: dcgans.{name}.classifier: '{gan.classifier}' is not a 2D classifier in models "
            f"trained on dataset '{gan.dataset}' or on one drawing the same classes; "
            f"valid: {', '.join(fits) or '(none)'}"
        )


def same_labels(params: Params, a: str, b: str) -> bool:
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
