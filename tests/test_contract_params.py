"""The contract of params.yaml: it states every value a stage runs with, and refuses what does nothing.

No schema default but an "off" one; every entry of the project's file states every other key of its
kind, and the parsed values are the stated ones; a key the chosen architecture, source or mode
ignores is refused in one line; a generated dataset's `path` is its generator; and the schema
imports nothing heavy, since the Keras backend is chosen from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from ruamel.yaml import YAML

from pipeline import params as P
from pipeline.errors import UserError
from tests.conftest import ROOT, project_params, scratch_twin

SINGLE = {"runtime": P.Runtime, "tracking": P.Tracking, "lecture": P.Lecture}
NAMED = {"augment": P.Augment, "dcgans": P.DcganParams, "cyclegans": P.CycleganParams}


def schema_classes() -> list[type[BaseModel]]:
    """Every class of the schema: the subclasses of Strict, found from the package's modules."""
    found, todo = [], [P.Strict]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += [c for c in cls.__subclasses__() if c.__module__.startswith("pipeline.params")]
    return found


def is_off(value: Any) -> bool:
    """None, False, 0 or an empty list, tuple or mapping: what leaving out an optional switch means."""
    if value is None or value is False:
        return True
    if type(value) in (int, float):
        return value == 0
    return isinstance(value, list | tuple | dict) and not value


def kind_of(section: str, raw: dict) -> type[BaseModel]:
    if section == "datasets":
        return P.DATASET_SOURCES[raw["source"]]
    if section == "models":
        return P.ARCHITECTURES[raw["architecture"]]
    return NAMED[section]


def project_entries() -> list[tuple[str, dict, BaseModel]]:
    """(dotted name, raw entry after merge keys, parsed entry) of every entry of params.yaml."""
    raw = project_params()
    params = P.parse(raw)
    out = [(section, raw[section], getattr(params, section)) for section in SINGLE]
    for section in ("datasets", "models", *NAMED):
        for name, entry in raw.get(section, {}).items():
            out.append((f"{section}.{name}", entry, getattr(params, section)[name]))
    return out


# ---------------------------------------------------------------- (a) only "off" defaults


def test_the_schema_has_many_classes():
    names = {c.__name__ for c in schema_classes()}
    assert {"Params", "Runtime", "TracksDataset", "UnetParams", "DcganParams", "Transform"} <= names


@pytest.mark.parametrize("cls", schema_classes(), ids=lambda c: c.__name__)
def test_every_default_is_off(cls):
    defaults = {
        n: f.get_default(call_default_factory=True)
        for n, f in cls.model_fields.items()
        if not f.is_required()
    }
    assert not {n: d for n, d in defaults.items() if not is_off(d)}, (
        "a default that is not 'off' can silently differ from params.yaml"
    )


def test_an_off_value_is_only_none_false_zero_or_empty():
    assert all(is_off(v) for v in (None, False, 0, 0.0, [], {}, ()))
    assert not any(is_off(v) for v in (True, 1, 0.5, "", "constant", [0], {"a": 1}))


# ---------------------------------------------------------------- (b) params.yaml states every value


@pytest.mark.parametrize(
    ("where", "raw", "parsed"), project_entries(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_entry_states_every_key_without_an_off_default(where, raw, parsed):
    required = {n for n, f in type(parsed).model_fields.items() if f.is_required()}
    assert not required - set(raw), f"{where} leaves out keys that have no default"


def stated(raw: Any, parsed: Any, where: str) -> list[str]:
    """Where the parsed value differs from the raw one; keys not in raw must have parsed to 'off'."""
    if isinstance(parsed, dict) and isinstance(raw, dict):
        wrong = [
            f"{where}.{k}: not stated, but {v!r}" for k, v in parsed.items() if k not in raw and not is_off(v)
        ]
        for key in raw:
            wrong += stated(raw[key], parsed.get(key), f"{where}.{key}")
        return wrong
    if isinstance(parsed, list) and isinstance(raw, list) and len(raw) == len(parsed):
        return [
            w for i, (r, p) in enumerate(zip(raw, parsed, strict=True)) for w in stated(r, p, f"{where}.{i}")
        ]
    same = raw == parsed and (isinstance(raw, bool) == isinstance(parsed, bool))
    return [] if same else [f"{where}: stated {raw!r}, parsed {parsed!r}"]


@pytest.mark.parametrize(
    ("where", "raw", "parsed"), project_entries(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_parsed_value_is_the_stated_one(where, raw, parsed):
    assert not stated(raw, parsed.model_dump(mode="json"), where)


def test_the_stated_values_compare_exactly():
    assert stated({"a": 1, "b": [0, 2]}, {"a": 1.0, "b": [0, 2], "c": None}, "x") == []
    assert stated({"a": 1}, {"a": 2}, "x") == ["x.a: stated 1, parsed 2"]
    assert stated({"a": 1}, {"a": 1, "schedule": "constant"}, "x") == [
        "x.schedule: not stated, but 'constant'"
    ]
    assert stated({"a": True}, {"a": 1}, "x") != []


def test_dvc_reads_the_values_the_stages_read():
    """Merge keys share blocks: DVC (ruamel.yaml, safe) must see what the stages (PyYAML) see."""
    text = (ROOT / "params.yaml").read_text()
    assert "<<: *" in text, "params.yaml shares blocks with YAML merge keys"
    assert YAML(typ="safe").load(text) == yaml.safe_load(text)


def test_the_shared_blocks_are_the_code_defaults_of_today():
    """tracks32 and tracks32_clean state the physics the tracks source ran with before (no hidden values)."""
    datasets = project_params()["datasets"]
    physics = {
        "muons": [0, 2],
        "alphas": [0, 2],
        "betas": [0, 4],
        "muon_intensity": 80,
        "alpha_intensity": 250,
        "beta_intensity": 30,
        "alpha_size": [1.0, 1.8],
        "beta_length": [8, 24],
        "beta_curl": 0.5,
        "mask_threshold": 8.0,
    }
    sensor = {"bias": 10, "dark_current": 1.0, "read_noise": 4.0, "hot_pixels": 3}
    assert {k: datasets["tracks32"][k] for k in {**physics, **sensor}} == {**physics, **sensor}
    assert {k: datasets["tracks32_clean"][k] for k in physics} == physics
    assert not set(sensor) & set(datasets["tracks32_clean"])


# ---------------------------------------------------------------- (c) ignored keys are refused


def error_of(mutate: Callable[[dict], object]) -> str:
    raw = project_params()
    mutate(raw)
    with pytest.raises(UserError) as exc:
        P.parse(raw)
    message = str(exc.value)
    assert "\n" not in message
    return message


def valid_keys(message: str) -> list[str]:
    return message.split("valid keys: ")[1].split(" (closest")[0].split(", ")


def test_label_smoothing_is_for_classifiers_only():
    # pipeline.training.compile_model reads it for the classification loss; segmentation brings its own.
    msg = error_of(lambda p: p["models"]["unet"].update(label_smoothing=0.1))
    assert msg.startswith("params.yaml: models.unet.label_smoothing: unknown key; valid keys: ")
    assert "label_smoothing" not in valid_keys(msg) and "loss" in valid_keys(msg)
    for classifier in ("filter_net", "mlp", "cnn", "transfer"):
        assert "label_smoothing" in P.ARCHITECTURES[classifier].model_fields


@pytest.mark.parametrize("key", P.SENSOR_KEYS)
def test_a_clean_rendering_refuses_the_sensor_keys(key):
    msg = error_of(lambda p: p["datasets"]["tracks32_clean"].update({key: 1}))
    assert msg.startswith(f"params.yaml: datasets.tracks32_clean.{key}: ignored with render: clean")
    assert "set render: ccd" in msg and key not in valid_keys(msg) and "muons" in valid_keys(msg)


def test_a_ccd_rendering_needs_the_sensor_keys():
    msg = error_of(lambda p: p["datasets"]["tracks"].pop("read_noise"))
    assert msg == (
        "params.yaml: datasets.tracks.read_noise: required key is missing "
        "with render: ccd (the sensor's frames)"
    )


def test_fine_tune_layers_is_refused_without_pretrained_weights():
    # pipeline.tasks.transfer.fit_two_phases unfreezes layers only where phase 1 froze them.
    msg = error_of(lambda p: p["models"].update(transfer_scratch={**scratch_twin(p), "fine_tune_layers": 10}))
    assert msg.startswith("params.yaml: models.transfer_scratch.fine_tune_layers: ignored with weights: null")
    assert "fine_tune_layers" not in valid_keys(msg)
    msg = error_of(lambda p: p["models"]["transfer"].pop("fine_tune_layers"))
    assert "models.transfer.fine_tune_layers: required key is missing with pretrained weights" in msg


def test_the_fine_tuning_keys_are_refused_without_a_fine_tuning_phase():
    msg = error_of(lambda p: p["models"]["transfer"].update(fine_tune_epochs=0))
    assert msg.startswith("params.yaml: models.transfer.fine_tune_lr: ignored with fine_tune_epochs: 0")

    def twin_without_lr(p: dict) -> None:
        p["models"]["transfer_scratch"] = {k: v for k, v in scratch_twin(p).items() if k != "fine_tune_lr"}

    msg = error_of(twin_without_lr)
    assert "models.transfer_scratch.fine_tune_lr: required key is missing with fine_tune_epochs > 0" in msg


def test_the_loss_keys_are_refused_where_the_loss_has_no_term_that_reads_them():
    msg = error_of(lambda p: p["models"]["unet"].update(focal_gamma=2.0))
    assert msg.startswith("params.yaml: models.unet.focal_gamma: ignored without a focal term in loss")
    msg = error_of(lambda p: p["models"]["unet"].update(loss={"focal": 1.0}))
    assert msg == "params.yaml: models.unet.focal_gamma: required key is missing with a focal term in loss"
    msg = error_of(lambda p: p["models"]["unet"].update(loss={"dice": 1.0}, class_weights="balanced"))
    assert msg.startswith("params.yaml: models.unet.class_weights: ignored with dice alone in loss")
    raw = project_params()
    raw["models"]["unet"].update(loss={"focal": 1.0}, focal_gamma=1.5, class_weights="balanced")
    assert P.parse(raw).model("unet").focal_gamma == 1.5


def test_transforms_are_refused_without_copies():
    # pipeline.data.augment.augment_split applies them to the augmented copies only.
    msg = error_of(lambda p: p["augment"]["tracks"].update(copies=0))
    assert msg.startswith("params.yaml: augment.tracks.transforms: ignored with copies: 0")


# ---------------------------------------------------------------- (d) a dataset's path


GENERATED = sorted(s for s, c in P.DATASET_SOURCES.items() if issubclass(c, P.GeneratedDataset))


def test_the_generated_sources_are_ours_and_the_packaged_one():
    assert GENERATED == ["lfw", "motion", "shapes", "spectra", "textures", "tracks"]
    for source in GENERATED:
        assert (ROOT / P.generator_module(source)).is_file()


@pytest.mark.parametrize("source", GENERATED)
def test_a_generated_dataset_is_read_from_its_generator(source):
    raw = project_params()
    name = next(n for n, d in raw["datasets"].items() if d["source"] == source)
    assert raw["datasets"][name]["path"] == f"pipeline/data/{source}.py"
    raw["datasets"][name]["path"] = "images"
    with pytest.raises(UserError) as exc:
        P.parse(raw)
    module = f"pipeline/data/{source}.py"
    assert str(exc.value) == (
        f"params.yaml: datasets.{name}.path: a {source} dataset is made by {module}; valid: {module}"
    )


def test_every_dataset_has_a_path():
    for name, entry in project_params()["datasets"].items():
        assert entry.get("path"), name
    for cls in P.DATASET_SOURCES.values():
        assert cls.model_fields["path"].is_required()


# ---------------------------------------------------------------- (e) nothing heavy


def test_the_schema_imports_nothing_heavy():
    """Stages choose the Keras backend from these params, before Keras may be imported."""
    code = (
        "import json, sys; from pipeline import params; params.load('params.yaml'); "
        "heavy = ('keras', 'tensorflow', 'numpy', 'mlflow', 'albumentations', 'jax', 'scipy', 'cv2'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == []
