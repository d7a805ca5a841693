"""The contract: a stage's code deps in dvc.yaml are exactly the project modules its command imports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.tools import stage_deps
from pipeline.tools.sandbox import BIN, ROOT, child_env
from pipeline.tools.stage_deps import command_modules, is_trivial_init, minimal_deps, project_files


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_project_code_deps_match_imports():
    reports = stage_deps.check(ROOT)
    assert reports, "no stages found in dvc.yaml"
    if not all(r.ok for r in reports):
        pytest.fail(
            "code deps in dvc.yaml differ from what the stages import "
            "(python -m pipeline.tools.stage_deps --fix rewrites them):\n"
            + stage_deps.format_report(reports),
            pytrace=False,
        )


def test_function_level_imports_count(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/main.py": "import os\n\n\ndef run():\n    import pkg.late\n",
        "pkg/late.py": "",
    })  # fmt: skip
    assert project_files(tmp_path, "pkg.main", "pkg") == {"pkg/main.py", "pkg/late.py"}


def test_from_package_import_resolves_submodules(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/main.py": "from pkg import sub, util\nfrom pkg.tools import helper\nfrom pkg.util import name\n",
        "pkg/sub.py": "",
        "pkg/util.py": "name = 1\n",
        "pkg/tools/__init__.py": "",
        "pkg/tools/helper.py": "",
        "pkg/tools/unused.py": "",
    })  # fmt: skip
    found = project_files(tmp_path, "pkg.main", "pkg")
    assert found == {"pkg/main.py", "pkg/sub.py", "pkg/util.py", "pkg/tools/helper.py"}


def test_relative_imports(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/top.py": "",
        "pkg/sub/__init__.py": "from . import c\n",
        "pkg/sub/b.py": "from .c import x\nfrom ..top import y\n",
        "pkg/sub/c.py": "x = 1\n",
    })  # fmt: skip
    assert project_files(tmp_path, "pkg.sub.b", "pkg") == {
        "pkg/sub/__init__.py",
        "pkg/sub/b.py",
        "pkg/sub/c.py",
        "pkg/top.py",
    }


def test_init_with_code_counts_docstring_only_does_not(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": '"""Only a docstring."""\n\nfrom __future__ import annotations\n',
        "pkg/sub/__init__.py": '"""Runs code on import."""\n\nREGISTRY = {}\n',
        "pkg/sub/mod.py": "",
        "pkg/main.py": "import pkg.sub.mod\n",
    })  # fmt: skip
    assert is_trivial_init(tmp_path / "pkg/__init__.py")
    assert not is_trivial_init(tmp_path / "pkg/sub/__init__.py")
    assert project_files(tmp_path, "pkg.main", "pkg") == {
        "pkg/main.py",
        "pkg/sub/__init__.py",
        "pkg/sub/mod.py",
    }


def test_third_party_ignored(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/main.py": "import numpy as np\nfrom os import path\nimport keras.layers\nimport pkgx\n",
        "pkgx.py": "",  # same prefix, another top-level module: not the project package
    })  # fmt: skip
    assert project_files(tmp_path, "pkg.main", "pkg") == {"pkg/main.py"}


def test_import_cycle_terminates(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from pkg import a\n",
    })  # fmt: skip
    assert project_files(tmp_path, "pkg.a", "pkg") == {"pkg/a.py", "pkg/b.py"}


def test_command_modules():
    assert command_modules("python -m pipeline.stages.train cnn --data data/prepared/shapes") == [
        "pipeline.stages.train"
    ]
    assert command_modules(["echo hi", "python -m pipeline.stages.report --out x"]) == [
        "pipeline.stages.report"
    ]


def test_minimal_deps_uses_a_directory_only_when_all_its_modules_are_imported(tmp_path):
    write(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/a/__init__.py": '"""Nothing to run."""\n',
        "pipeline/a/x.py": "",
        "pipeline/a/y.py": "",
        "pipeline/b/x.py": "",
        "pipeline/b/y.py": "",
    })  # fmt: skip
    files = {"pipeline/a/x.py", "pipeline/a/y.py", "pipeline/b/x.py"}
    assert minimal_deps(tmp_path, files) == ["pipeline/a", "pipeline/b/x.py"]


DVC_YAML = """\
# Comments in this file survive --fix.
stages:
  hello:
    foreach: ${names}
    do:
      cmd: python -m pipeline.stages.hello ${key}
      deps:
        - data.txt  # the input
        - pipeline/stages/hello.py
        - pipeline/unused.py
        - pipeline/lib
      # A comment between deps and outs.
      outs:
        - out/${key}
  bye:
    cmd: python -m pipeline.stages.bye
    deps:
      - pipeline/lib/util.py
"""


def test_fix_rewrites_code_deps_and_keeps_comments(tmp_path, capsys):
    repo = write(tmp_path, {
        "dvc.yaml": DVC_YAML,
        "params.yaml": "names:\n  a: 1\n  b: 2\n",
        "data.txt": "data\n",
        "pipeline/__init__.py": "",
        "pipeline/stages/__init__.py": "",
        "pipeline/stages/hello.py": "from pipeline import helper\n",
        "pipeline/stages/bye.py": "from pipeline.lib import other, util\n",
        "pipeline/helper.py": "def f():\n    from pipeline.lib.util import g\n",
        "pipeline/lib/__init__.py": '"""Nothing to run."""\n',
        "pipeline/lib/util.py": "def g():\n    pass\n",
        "pipeline/lib/other.py": "",
        "pipeline/unused.py": "",
    })  # fmt: skip
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=child_env(DVC_NO_ANALYTICS="1"), check=True, capture_output=True)

    before = {r.stage: r for r in stage_deps.check(repo)}
    assert before["hello@a"].missing == ["pipeline/helper.py"]
    assert sorted(before["hello@a"].unused) == ["pipeline/lib", "pipeline/unused.py"]
    assert before["hello@a"].unused["pipeline/lib"] == ["pipeline/lib/other.py"]
    assert before["bye"].missing == ["pipeline/lib/other.py", "pipeline/stages/bye.py"]
    assert stage_deps.main(["--root", str(repo)]) == 1

    assert stage_deps.main(["--fix", "--root", str(repo)]) == 0
    printed = capsys.readouterr().out
    assert "hello: +pipeline/helper.py +pipeline/lib/util.py -pipeline/unused.py -pipeline/lib" in printed
    assert all(r.ok for r in stage_deps.check(repo))
    text = (repo / "dvc.yaml").read_text()
    assert "# Comments in this file survive --fix." in text
    assert "      - data.txt  # the input\n" in text
    assert "      # A comment between deps and outs.\n      outs:" in text
    assert "      - pipeline/stages/hello.py\n      # A comment" in text
    assert "    deps:\n      - pipeline/lib\n      - pipeline/stages/bye.py\n" in text

    assert stage_deps.main(["--fix", "--root", str(repo)]) == 0  # a second run changes nothing
    assert (repo / "dvc.yaml").read_text() == text


def test_module_resolution_follows_python(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/main.py": "from pkg import both, shadow\nfrom pkg.shadow import x\n",
        "pkg/both.py": "",  # a package of the same name wins over it
        "pkg/both/__init__.py": "X = 1\n",
        "pkg/shadow.py": "x = 1\n",  # a directory without __init__.py loses to it
        "pkg/shadow/x.py": "",
    })  # fmt: skip
    assert project_files(tmp_path, "pkg.main", "pkg") == {
        "pkg/main.py",
        "pkg/both/__init__.py",
        "pkg/shadow.py",
    }
