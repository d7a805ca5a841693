"""params.yaml checking: every kind of mistake ends in one line naming the key and what is valid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipeline import params as P
from pipeline.errors import UserError, choices_hint, closest, run_cli
from pipeline.stages.common import load_checked
from tests.conftest import ROOT, USER_FOLDERS, project_params, tiny


def base() -> dict:
    return tiny(project_params())


def error_of(mutate: Callable[[dict], object]) -> str:
    """The message parse() raises for the project's params changed by `mutate`."""
    raw = base()
    mutate(raw)
    with pytest.raises(UserError) as exc:
        P.parse(raw)
    message = str(exc.value)
    assert "\n" not in message, "a user error must be one line"
    return message


def test_project_params_and_tiny_params_are_valid():
    params = P.load(ROOT / "params.yaml")
    assert set(params.models) >= {"filter_net", "mlp", "cnn"}
    assert params.models["cnn"].architecture == "cnn"
    tiny_params = P.parse(base())
    assert tiny_params.datasets["shapes"].image_size == 16


def test_every_leaf_key_of_params_yaml_has_a_trailing_comment():
    missing = []
    for number, line in enumerate((ROOT / "params.yaml").read_text().splitlines(), 1):
        # A key with a value on its line (not a section header, not a list item, not a comment).
        if re.match(r"^\s*[A-Za-z_][\w]*:\s*[^\s#]", line) and "#" not in line:
            missing.append(f"{number}: {line}")
    assert not missing, "params.yaml keys without a trailing comment:\n" + "\n".join(missing)


# ---------------------------------------------------------------- each kind of mistake


def test_misspelled_key_names_the_path_and_lists_the_valid_keys():
    msg = error_of(lambda p: p["models"]["cnn"].update(learning_rate=0.1))
    assert "models.cnn.learning_rate: unknown key" in msg
    valid = msg.split("valid keys: ")[1].split(", ")
    assert "lr" in valid and "filters" in valid and "epochs" in valid
    assert "hidden" not in valid  # the keys of this architecture only


@pytest.mark.parametrize(
    ("mutate", "key", "closest"),
    [
        (lambda p: p["datasets"]["shapes"].update(per_clas=3), "datasets.shapes.per_clas", "per_class"),
        (lambda p: p.update(sed=1), "sed", "seed"),
        (lambda p: p["runtime"].update(worker=2), "runtime.worker", "workers"),
        (lambda p: p["augment"]["shapes"].update(copie=2), "augment.shapes.copie", "copies"),
    ],
)
def test_misspelled_key_gets_the_closest_match(mutate, key, closest):
    msg = error_of(mutate)
    assert msg.startswith(f"params.yaml: {key}: unknown key; valid keys: ")
    assert msg.endswith(f"(closest: {closest})")


def test_wrong_type_names_the_key_and_the_value():
    msg = error_of(lambda p: p["models"]["cnn"].update(lr="fast"))
    assert msg.startswith("params.yaml: models.cnn.lr: ")
    assert "valid number" in msg and "'fast'" in msg


def test_wrong_type_inside_a_list_names_the_index():
    msg = error_of(lambda p: p["models"]["cnn"].update(filters=[16, "many"]))
    assert "models.cnn.filters.1:" in msg and "'many'" in msg


@pytest.mark.parametrize(
    ("mutate", "key", "bound"),
    [
        (lambda p: p["models"]["cnn"].update(epochs=0), "models.cnn.epochs", "greater than or equal to 1"),
        (lambda p: p["models"]["mlp"].update(lr=-1), "models.mlp.lr", "greater than 0"),
        (lambda p: p["models"]["mlp"].update(dropout=1.0), "models.mlp.dropout", "less than 1"),
        (lambda p: p.update(seed=-2), "seed", "greater than or equal to 0"),
        (lambda p: p["runtime"].update(workers=0), "runtime.workers", "greater than or equal to 1"),
        (lambda p: p["models"]["cnn"].update(shifts=[-1]), "models.cnn.shifts.0", "greater than or equal"),
        (lambda p: p["datasets"]["shapes"].update(image_size=8), "datasets.shapes.image_size", "12"),
    ],
)
def test_out_of_range_names_the_key_and_the_bound(mutate, key, bound):
    msg = error_of(mutate)
    assert f"params.yaml: {key}: " in msg
    assert bound in msg


def test_no_shifts_is_an_error():
    # evaluate reports the accuracy drop between the smallest and the largest shift
    msg = error_of(lambda p: p["models"]["cnn"].update(shifts=[]))
    assert "models.cnn.shifts: " in msg and "at least 1 item" in msg


def test_split_fractions_must_leave_training_data():
    msg = error_of(lambda p: p["datasets"]["shapes"].update(val_fraction=0.5, test_fraction=0.45))
    assert "datasets.shapes: val_fraction + test_fraction must leave at least 0.1 for training" in msg


def test_choice_fields_list_the_valid_choices():
    msg = error_of(lambda p: p["runtime"].update(backend="torch"))
    assert "runtime.backend: got 'torch'; valid: jax, tensorflow" in msg
    msg = error_of(lambda p: p["datasets"]["shapes"].update(classes=["angle", "lines"]))
    assert "datasets.shapes.classes.1: got 'lines'" in msg and "(closest: line)" in msg
    msg = error_of(lambda p: p["models"]["cnn"].update(padding="sane"))
    assert "models.cnn.padding: got 'sane'; valid: same, valid (closest: same)" in msg


def assert_choices(msg: str, start: str, include: set[str], best: str) -> None:
    """`msg` is start + 'valid: a, b, ...' listing `include` (and maybe more), ending in the closest."""
    assert msg.startswith(start + "valid: "), msg
    listed = msg.removeprefix(start + "valid: ").split(" (closest: ")[0].split(", ")
    assert include <= set(listed) and listed == sorted(listed)
    assert msg.endswith(f" (closest: {best})")


def test_model_naming_a_missing_dataset_gets_the_closest_match():
    msg = error_of(lambda p: p["models"]["cnn"].update(dataset="shape"))
    assert_choices(
        msg, "params.yaml: models.cnn.dataset: no dataset 'shape'; ", {"angle_vs_rest", "shapes"}, "shapes"
    )


def test_unknown_architecture_lists_the_architectures_and_the_closest():
    msg = error_of(lambda p: p["models"]["cnn"].update(architecture="cnnn"))
    start = "params.yaml: models.cnn.architecture: unknown architecture 'cnnn'; "
    assert_choices(msg, start, {"cnn", "filter_net", "mlp"}, "cnn")
    msg = error_of(lambda p: p["models"]["cnn"].pop("architecture"))
    assert re.match(r"params\.yaml: models\.cnn\.architecture: missing; valid: cnn, filter_net, mlp\b", msg)


def test_key_of_another_architecture_is_unknown():
    msg = error_of(lambda p: p["models"]["cnn"].update(hidden=[8]))
    assert "models.cnn.hidden: unknown key" in msg


def test_unknown_source_lists_the_sources_and_the_closest():
    msg = error_of(lambda p: p["datasets"]["shapes"].update(source="folders"))
    start = "params.yaml: datasets.shapes.source: unknown source 'folders'; "
    assert_choices(msg, start, {"folder", "shapes"}, "folder")


def test_folder_dataset_needs_a_path_and_checks_its_keys():
    folder = USER_FOLDERS["folder"]
    misspelled = {**{k: v for k, v in folder.items() if k != "channels"}, "chanels": 3}

    def add(p, entry):
        p["datasets"]["mine"] = entry
        p["augment"]["mine"] = {"mode": "offline", "copies": 0, "preview": 8, "transforms": []}

    msg = error_of(lambda p: add(p, misspelled))
    assert "datasets.mine.chanels: unknown key" in msg and "(closest: channels)" in msg
    msg = error_of(lambda p: add(p, {k: v for k, v in folder.items() if k != "path"}))
    assert "datasets.mine.path: required key is missing" in msg
    msg = error_of(lambda p: add(p, {**folder, "path": "x", "resize": "squash"}))
    assert "datasets.mine.resize: got 'squash'; valid: crop, pad, stretch" in msg


def test_missing_augment_entry_says_how_to_turn_augmentation_off():
    msg = error_of(lambda p: p["augment"].pop("shapes"))
    assert "augment.shapes: missing; every dataset needs an augment entry" in msg
    assert "copies: 0" in msg


def test_augment_entry_for_no_dataset_gets_the_closest_match():
    spec = {"mode": "offline", "copies": 0, "preview": 8, "transforms": []}
    msg = error_of(lambda p: p["augment"].update(shape=spec))
    assert "augment.shape: no dataset of that name" in msg and "(closest: shapes)" in msg


def test_binary_positive_must_be_one_of_the_classes():
    msg = error_of(lambda p: p["datasets"]["angle_vs_rest"].update(classes=["line", "ring"]))
    assert "datasets.angle_vs_rest: positive 'angle' is not one of classes" in msg


def test_missing_or_empty_sections():
    assert "models: required key is missing" in error_of(lambda p: p.pop("models"))
    assert "datasets: required key is missing" in error_of(lambda p: p.pop("datasets"))
    assert "models: must name at least one entry" in error_of(lambda p: p.update(models={}))
    assert "models.cnn: expected a mapping" in error_of(lambda p: p["models"].update(cnn=3))
    with pytest.raises(UserError, match="expected a mapping of sections"):
        P.parse([1, 2])


def test_lookup_of_an_entry_that_does_not_exist():
    params = P.parse(base())
    with pytest.raises(UserError, match=r"models\.cnm: no such entry .*\(closest: cnn\)"):
        params.model("cnm")
    with pytest.raises(UserError, match=r"datasets\.shape: no such entry .*\(closest: shapes\)"):
        params.augment_for("shape")


def test_arch_kwargs_are_the_builder_hyperparameters_only():
    params = P.parse(base())
    kwargs = P.arch_kwargs(params.models["cnn"])
    assert kwargs["filters"] == params.models["cnn"].filters and "kernel_size" in kwargs
    assert not {"lr", "epochs", "dataset", "architecture", "shifts"} & set(kwargs)
    filter_net = params.models["filter_net"]
    assert P.arch_kwargs(filter_net) == {"kernel_size": filter_net.kernel_size}


# ---------------------------------------------------------------- load() and load_checked()


def test_load_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        P.load(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 1\nmodels: [unclosed\n")
    with pytest.raises(UserError) as exc:
        P.load(bad)
    assert str(exc.value).startswith(f"{bad}: not valid YAML") and "\n" not in str(exc.value)


def test_load_names_the_file(tmp_path):
    raw = base()
    raw["models"]["cnn"]["learning_rate"] = 1
    path = tmp_path / "my-params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"^.*my-params\.yaml: models\.cnn\.learning_rate: unknown key"):
        P.load(path)


def write_params(folder: Path, raw: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_load_checked_checks_the_augmentations_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = base()
    write_params(tmp_path, raw)
    assert load_checked().seed == raw["seed"]

    raw["augment"]["shapes"]["transforms"] = [{"name": "GausNoise", "p": 0.5}]
    write_params(tmp_path, raw)
    with pytest.raises(UserError) as exc:
        load_checked()
    msg = str(exc.value)
    assert msg.startswith("augment.shapes.transforms[0].name: unknown transform 'GausNoise'")
    assert msg.endswith("(closest: GaussNoise)")


def test_load_checked_without_augmentations_leaves_albumentations_unimported(tmp_path):
    """The stages that never read augment entries (prepare, evaluate, ...) skip building them: the
    schema is still checked, albumentations (0.7 s of start-up) is never imported."""
    raw = base()
    raw["augment"]["shapes"]["transforms"] = [{"name": "GausNoise", "p": 0.5}]  # built: an error
    write_params(tmp_path, raw)
    script = (
        "import sys\n"
        "from pipeline.stages.common import load_checked\n"
        "print(load_checked(augmentations=False).seed, 'albumentations' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def load() -> subprocess.CompletedProcess:  # in a fresh process: nothing imported yet
        return subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    proc = load()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(raw["seed"]), "False"]
    raw["seed"] = "many"  # the schema is checked all the same
    write_params(tmp_path, raw)
    proc = load()
    assert proc.returncode != 0 and "seed" in proc.stderr


def test_load_checked_names_a_bad_augmentation_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = base()
    raw["augment"]["shapes"]["transforms"] = [
        {"name": "GaussNoise", "p": 0.5, "args": {"std_rang": [0.1, 0.2]}}
    ]
    write_params(tmp_path, raw)
    with pytest.raises(UserError) as exc:
        load_checked()
    assert str(exc.value) == (
        "augment.shapes.transforms[0].args.std_rang: GaussNoise takes no argument 'std_rang'; "
        "valid: mean_range, noise_scale_factor, per_channel, std_range (closest: std_range)"
    )


# ---------------------------------------------------------------- the real stage command


def run_stage(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


PREPARE = ("pipeline.stages.prepare", "shapes", "--out", "data/prepared/shapes")
AUGMENT = (
    "pipeline.stages.augment",
    "shapes",
    "--data",
    "data/prepared/shapes",
    "--out",
    "data/augmented/shapes",
)


@pytest.mark.parametrize(
    ("mutate", "stage", "expected"),
    [
        (
            lambda p: p["models"]["cnn"].update(learning_rate=0.1),
            PREPARE,
            "error: params.yaml: models.cnn.learning_rate: unknown key; valid keys: ",
        ),
        (  # the augment stage builds the transforms it applies (the check stage does too, first)
            lambda p: p["augment"]["shapes"].update(transforms=[{"name": "HorizontalFlp", "p": 0.5}]),
            (*AUGMENT, "--preview", "reports/preview.png"),
            "error: augment.shapes.transforms[0].name: unknown transform 'HorizontalFlp'; valid: ",
        ),
    ],
)
def test_stage_command_exits_with_one_line_and_no_traceback(tmp_path, mutate, stage, expected):
    raw = base()
    mutate(raw)
    write_params(tmp_path, raw)
    proc = run_stage(tmp_path, *stage)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(expected)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "data").exists(), "the check runs before any work starts"


# ---------------------------------------------------------------- pipeline.errors


def test_closest_and_choices_hint():
    assert closest("shape", ["shapes", "angle_vs_rest"]) == " (closest: shapes)"
    assert closest("zzz", ["shapes"]) == ""
    assert choices_hint("cnnn", ["mlp", "cnn", "filter_net"]) == "valid: cnn, filter_net, mlp (closest: cnn)"


def test_run_cli_turns_a_user_error_into_one_line_and_exit_code_2(capsys):
    def main():
        raise UserError("models.x.lr: wrong")

    with pytest.raises(SystemExit) as exc:
        run_cli(main)
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: models.x.lr: wrong\n"
    run_cli(lambda: None)  # no error, no exit

    def bug():
        raise KeyError("a bug, not a user's mistake")

    with pytest.raises(KeyError):  # programming errors keep their traceback
        run_cli(bug)
