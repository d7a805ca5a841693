"""Errors before the machinery, through the commands a user runs: a mistake in params.yaml ends
`dvc repro` and `dvc exp run` in the project's one line (the `check` stage every stage depends on),
not in DVC's message about a path the mistake names; a missing or broken params.yaml is named as
such; a cnn that pools down to one pixel warns; and a stage's output on a CPU machine holds nothing
that looks like an error when nothing is wrong."""

from __future__ import annotations

import re

import pytest
import yaml

from pipeline.models.classifiers import collapsed_block
from pipeline.noise import KNOWN_NOISE

pytestmark = pytest.mark.slow

MISSING_DATASET = "models.cnn.dataset: no dataset 'shapez'; valid: angle_vs_rest, shapes (closest: shapes)"
# What a user reads as a failure: TensorFlow's E/F log lines, cuInit, tracebacks, "error", "failed".
LOOKS_LIKE_AN_ERROR = re.compile(r"^[EF]\d{4} |cuInit|Traceback|\berror\b|\bfailed\b|CUDA", re.I | re.M)


def test_stages_show_no_cuda_start_up_errors_on_a_cpu_machine(reproduced):
    out = reproduced.first.stdout + reproduced.first.stderr
    assert "Running stage 'train@cnn'" in out and "train cnn: best epoch" in out
    assert "cuInit" not in out and "CUDA" not in out and "cuda" not in out
    # Nor TensorFlow's start-up banner and notices (they are not errors, but say nothing useful).
    assert "absl::InitializeLog" not in out and "oneDNN" not in out


def test_a_stage_shows_no_line_that_looks_like_an_error(reproduced):
    out = reproduced.first.stdout + reproduced.first.stderr
    assert not LOOKS_LIKE_AN_ERROR.findall(out), [
        line for line in out.splitlines() if LOOKS_LIKE_AN_ERROR.search(line)
    ]
    # Nor MLflow's registry messages: evaluate says the version and the champion in its own line.
    assert "evaluate cnn: registered as version 1; champion is version 1" in out
    assert "Registered model" not in out and "Created version" not in out, out


def test_second_repro_runs_nothing_and_an_edit_reruns_that_model(reproduced):
    again = reproduced.run_dvc("repro")
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout
    try:
        params = yaml.safe_load((reproduced.repo / "params.yaml").read_text())
        params["lecture"]["feature_images"] += 1  # a param only the lecture stage reads
        (reproduced.repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        edited = reproduced.run_dvc("repro")
        ran = set(re.findall(r"Running stage '([^']+)'", edited.stdout))
        assert edited.returncode == 0 and ran == {"check", "lecture", "report"}, edited.stdout
    finally:
        reproduced.restore()
        assert reproduced.run_dvc("repro").returncode == 0


@pytest.mark.parametrize("command", ["repro", "exp run"])
def test_a_model_naming_a_missing_dataset_ends_in_the_projects_line(reproduced, command):
    try:
        if command == "repro":
            params = yaml.safe_load((reproduced.repo / "params.yaml").read_text())
            params["models"]["cnn"]["dataset"] = "shapez"
            (reproduced.repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            proc = reproduced.run_dvc("repro")
        else:
            proc = reproduced.run_dvc("exp", "run", "-S", "models.cnn.dataset=shapez")
        out = proc.stdout + proc.stderr
        assert MISSING_DATASET in out, out[-3000:]
        assert "No such file" not in out and "Errno" not in out
        assert "Running stage 'train@cnn'" not in out
    finally:
        reproduced.restore()


def test_a_yaml_syntax_error_names_the_file_and_line(reproduced):
    try:
        lines = (reproduced.repo / "params.yaml").read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("seed:"))
        lines[at] = "seed: [42"
        (reproduced.repo / "params.yaml").write_text("\n".join(lines) + "\n")
        for args in (("repro",), ("exp", "run")):
            proc = reproduced.run_dvc(*args)
            out = proc.stdout + proc.stderr
            assert proc.returncode != 0 and "'params.yaml'" in out and f"line {at + 1}," in out, out
    finally:
        reproduced.restore()


def test_a_missing_params_file_is_named_missing(reproduced):
    try:
        (reproduced.repo / "params.yaml").unlink()
        for args in (("repro",), ("exp", "run")):
            proc = reproduced.run_dvc(*args)
            out = proc.stdout + proc.stderr
            assert proc.returncode != 0 and "'params.yaml' does not exist" in out, out
            assert "Could not find" not in out
    finally:
        reproduced.restore()


def test_a_cnn_pooled_down_to_one_pixel_warns_naming_the_key_and_the_block(reproduced):
    # tiny() draws 16x16 shapes: four 2x2 poolings leave 1x1, so blocks 5 and 6 see one pixel.
    try:
        # The warning comes from the train stage: the experiment goes that far (evaluate, lecture and
        # report of the pooled-down cnn would add a minute and show nothing more).
        proc = reproduced.run_dvc("exp", "run", "-S", "models.cnn.filters=[4,4,4,4,4,4]", "train@cnn")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert (
            "warning: models.cnn.filters: block 5 of 6 (block4_conv) (and the 1 after it) gets a 1x1 map"
            in out
        )
    finally:
        reproduced.restore()


def test_collapsed_block_only_where_the_map_is_one_pixel():
    assert collapsed_block([32, 32, 1], [16, 32, 64], 1, "same", 2) is None
    assert collapsed_block([32, 32, 1], [8] * 6, 1, "same", 2).startswith("block 6 of 6 (block5_conv) gets")
    assert collapsed_block([32, 32, 1], [8] * 6, 1, "valid", 2) is None
    assert collapsed_block([32, 32, 1], [8] * 3, 2, "same", 2) is None  # 32 -> 8 -> 2: block 3 sees 2x2
    assert collapsed_block([16, 16, 1], [8] * 3, 2, "same", 2).startswith("block 3 of 3")  # 16 -> 4 -> 1
    assert "length-1 map" in collapsed_block([16, 1], [8] * 6, 1, "same", 2)


def test_startup_noise_is_only_the_known_lines():
    assert KNOWN_NOISE.fullmatch(
        "E0000 00:00:1796134379.208856   27966 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
        "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
    )
    assert KNOWN_NOISE.fullmatch(
        "I0000 00:00:1796134376.334230   27966 cudart_stub.cc:31] Could not find cuda drivers on your "
        "machine, GPU will not be used."
    )
    # A driver that is there but failing (not 303), or any other error, still shows.
    assert not KNOWN_NOISE.fullmatch(
        "E0000 00:00:1796134379.208856   27966 cuda_platform.cc:52] failed call to cuInit: "
        "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected"
    )
    assert not KNOWN_NOISE.fullmatch("E0000 00:00:1.0 1 node_def_util.cc:682] something else")
