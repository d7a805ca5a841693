"""Check that each stage's code deps in dvc.yaml are exactly the project modules its command imports.

    python -m pipeline.tools.stage_deps          report missing and unused code deps (exit 1 if any)
    python -m pipeline.tools.stage_deps --fix    rewrite dvc.yaml's code deps to the imported files

Imports are found statically with `ast`, transitively, counting every import statement in a file
(inside functions too): a dep too many reruns a stage needlessly, a dep too few leaves a stale result.
Imports made by name at run time (importlib) are not seen.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pipeline"


def _relpath(path: Path | str, start: Path | str) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _locate(root: Path, module: str) -> Path | None:
    """Where Python finds `module` under root: its package's `__init__.py`, its .py file, or the
    directory of a namespace package; None if there is no such module."""
    base, found = root, None
    for part in module.split("."):
        if found is not None and found.is_file() and found.name != "__init__.py":
            return None  # a plain module has no submodules, even if a same-named directory exists
        base = base / part
        if (base / "__init__.py").is_file():  # a package wins over a module file of the same name
            found = base / "__init__.py"
        elif base.with_suffix(".py").is_file():
            found = base.with_suffix(".py")
        elif base.is_dir():
            found = base
        else:
            return None
    return found


def module_path(root: Path, module: str) -> Path | None:
    """The file that runs when `module` is imported (its `__init__.py` for a package), or None."""
    path = _locate(root, module)
    return path if path is not None and path.is_file() else None


def is_module(root: Path, module: str) -> bool:
    """Whether `module` names a module or a package (a namespace package has no file)."""
    return _locate(root, module) is not None


def is_trivial_init(path: Path) -> bool:
    """An `__init__.py` that runs nothing when imported: empty, a docstring, `from __future__` lines."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text(), filename=str(path)).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    # `from __future__` only switches compiler features: nothing to rerun a stage for.
    return all(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in body)


def _imports(path: Path, module: str, root: Path) -> set[str]:
    """Absolute names of every module that the import statements of `path` (module `module`) load."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue  # beyond the top-level package: Python refuses it too
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(source)
            # `from a import b` loads module a.b when b is one, not just a's attribute.
            names.update(f"{source}.{a.name}" for a in node.names if is_module(root, f"{source}.{a.name}"))
    return names


def project_files(root: Path, module: str, package: str = PACKAGE) -> set[str]:
    """Repository-relative paths of the files of `package` that running `python -m module` executes,
    transitively, leaving out `__init__.py` files that run nothing."""
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [module]
    if module_path(root, f"{module}.__main__"):  # `python -m pkg` runs pkg/__main__.py
        todo.append(f"{module}.__main__")
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] != package:
            continue
        seen.add(name)
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = module_path(root, name)
        if path is not None:
            files.add(path)
            todo.extend(_imports(path, name, root))
    return {p.relative_to(root).as_posix() for p in files if not is_trivial_init(p)}


def command_modules(cmd: str | list[str]) -> list[str]:
    """The modules a stage command runs with `python -m`."""
    modules = []
    for line in [cmd] if isinstance(cmd, str) else cmd:
        words = shlex.split(line)
        modules += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-m"]
    return modules


def _py_files(root: Path, directory: str) -> set[str]:
    """The .py files under `directory` that would rerun a stage when edited."""
    return {
        p.relative_to(root).as_posix() for p in (root / directory).rglob("*.py") if not is_trivial_init(p)
    }


def is_code_dep(root: Path, path: str, package: str = PACKAGE) -> bool:
    """A dep under the package that is a .py file or a directory; a data file there is not code.
    A path that no longer exists counts as code: it is a module or package that moved."""
    if path != package and not path.startswith(f"{package}/"):
        return False
    full = root / path
    return not full.is_file() or full.suffix == ".py"


def minimal_deps(root: Path, files: set[str], package: str = PACKAGE) -> list[str]:
    """`files` as deps: a directory whose .py files are all among them stands for them."""
    dirs = {Path(f).parent.as_posix() for f in files}
    dirs |= {p.as_posix() for d in list(dirs) for p in Path(d).parents if p.parts[:1] == (package,)}
    full = {d for d in dirs if _py_files(root, d) <= files}
    # The outermost full directory covers everything under it.
    full = {d for d in full if not any(p.as_posix() in full for p in Path(d).parents)}
    rest = {f for f in files if not any(f.startswith(f"{d}/") for d in full)}
    return sorted(full | rest)


@dataclass
class StageReport:
    """One stage of dvc.yaml: the code it runs, and how its deps differ from that."""

    stage: str  # its name with the foreach key, e.g. train@cnn
    family: str  # its name in dvc.yaml, e.g. train
    wdir: str = "."  # repository-relative; dep paths in dvc.yaml are relative to it
    needed: set[str] = field(default_factory=set)  # project files its command imports
    missing: list[str] = field(default_factory=list)  # needed files no dep covers
    unused: dict[str, list[str]] = field(default_factory=dict)  # dep -> its files the stage does not import
    errors: list[str] = field(default_factory=list)  # why its imports could not be known

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unused and not self.errors


def _stages(repo: Any) -> Iterator[tuple[str, Any]]:
    """(name, resolved stage or error message) for every stage of the repository's dvc.yaml, one at
    a time, so that a stage that does not resolve (a params key being renamed) hides no other."""
    from dvc.dvcfile import load_file
    from dvc.exceptions import DvcException

    loader = load_file(repo, os.path.join(repo.root_dir, "dvc.yaml")).stages
    for name in loader:
        try:
            yield name, loader[name]
        except DvcException as exc:
            yield name, str(exc)


def _stage_report(root: Path, name: str, stage: Any, package: str) -> StageReport:
    """Compare one stage's code deps with its command's imports; `stage` is a DVC stage or an error."""
    report = StageReport(stage=name, family=name.split("@")[0])
    if isinstance(stage, str):
        report.errors.append(stage)
        return report
    report.wdir = _relpath(stage.wdir, root)
    modules = [m for m in command_modules(stage.cmd) if m.split(".")[0] == package]
    report.errors += [f"command runs {m}: no such module" for m in modules if module_path(root, m) is None]
    for module in modules:
        report.needed |= project_files(root, module, package)
    covered: set[str] = set()
    for dep in (_relpath(d.fs_path, root) for d in stage.deps):
        if not is_code_dep(root, dep, package):
            continue
        files = _py_files(root, dep) if (root / dep).is_dir() else {dep}
        covered |= files
        # Without the command's module, which deps it uses is unknown.
        if files - report.needed and not report.errors:
            report.unused[dep] = sorted(files - report.needed)
    report.missing = sorted(report.needed - covered)
    return report


def check(root: Path = ROOT, package: str = PACKAGE) -> list[StageReport]:
    """Compare, for every stage of root/dvc.yaml (foreach resolved), code deps with imports."""
    from dvc.repo import Repo

    root = root.resolve()
    with Repo(str(root)) as repo:
        return [_stage_report(root, name, stage, package) for name, stage in _stages(repo)]


def format_report(reports: list[StageReport]) -> str:
    """Stage -> missing and unused deps; a foreach family whose stages all agree is shown once."""
    families: dict[str, list[StageReport]] = {}
    for r in reports:
        families.setdefault(r.family, []).append(r)
    lines = []
    for family, group in families.items():
        first = group[0]
        if len(group) > 1 and all(
            (r.missing, r.unused, r.errors) == (first.missing, first.unused, first.errors) for r in group
        ):
            shown = [(f"{family}@* ({len(group)} stages)", first)]
        else:
            shown = [(r.stage, r) for r in group]
        for name, r in shown:
            if r.ok:
                continue
            lines.append(f"{name}:")
            lines += [f"  error:   {e}" for e in r.errors]
            lines += [f"  missing: {f}" for f in r.missing]
            for dep, files in sorted(r.unused.items()):
                detail = f" (not imported: {', '.join(files)})" if files != [dep] else ""
                lines.append(f"  unused:  {dep}{detail}")
    return "\n".join(lines)


def _token(template: Any, value: str) -> Any:
    token = copy.copy(template)
    token.value = value
    return token


def _replace_items(seq: Any, new: list[str]) -> None:
    """Set a ruamel sequence's items, keeping each kept item's end-of-line comment, and keeping the
    comment lines after the list (ruamel attaches them to its last item) after the list."""
    tokens = {item: seq.ca.items.get(i) for i, item in enumerate(seq)}
    after, template = "", None
    if seq and tokens.get(seq[-1]) and tokens[seq[-1]][0] is not None:
        template = tokens[seq[-1]][0]
        eol, _, after = template.value.partition("\n")
        tokens[seq[-1]] = [_token(template, eol + "\n") if eol else None, *tokens[seq[-1]][1:]]
    seq.clear()
    seq.ca.items.clear()
    seq.extend(new)
    for i, item in enumerate(new):
        if tokens.get(item) and tokens[item][0] is not None:
            seq.ca.items[i] = list(tokens[item])
    if after and new:
        slot = seq.ca.items.setdefault(len(new) - 1, [None, None, None, None])
        slot[0] = _token(slot[0] or template, (slot[0].value if slot[0] else "\n") + after)


def fix(root: Path, reports: list[StageReport], package: str = PACKAGE) -> list[str]:
    """Rewrite root/dvc.yaml so that each stage family's code deps are exactly the files its stages
    import; other deps keep their order, first. Returns one line per change."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, quotes and block scalars survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long commands
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    doc = yaml.load(path.read_text())

    needed: dict[str, set[str]] = {}
    wdirs: dict[str, str] = {}
    for r in reports:  # a foreach family shares one `do:` list: it must hold the union
        needed.setdefault(r.family, set()).update(r.needed)
        wdirs[r.family] = r.wdir

    changes, notes = [], []
    broken = {r.family for r in reports if r.errors}
    for family, files in needed.items():
        if family in broken:  # its imports are unknown: leave its deps as they are
            notes.append(f"{family}: left as is, see its error")
            continue
        entry = doc["stages"][family]
        body = entry.get("do", entry)  # foreach families share `do:`
        wdir = root / wdirs[family]
        old = list(body.get("deps") or [])
        # Interpolated entries like ${item.dataset} are data, not code.
        is_code = [
            isinstance(d, str) and "${" not in d and is_code_dep(root, _relpath(wdir / d, root), package)
            for d in old
        ]
        code = [_relpath(root / f, wdir) for f in minimal_deps(root, files, package)]
        new = [d for d, c in zip(old, is_code, strict=True) if not c] + code
        if new == old:
            continue
        if body.get("deps"):
            _replace_items(body["deps"], new)
        elif "deps" in body:
            body["deps"] = new
        else:
            body.insert(list(body).index("cmd") + 1, "deps", new)
        added = [d for d in code if d not in old]
        removed = [d for d, c in zip(old, is_code, strict=True) if c and d not in code]
        change = " ".join([f"+{d}" for d in added] + [f"-{d}" for d in removed]) or "(reordered)"
        changes.append(f"{family}: {change}")
    if changes:
        with path.open("w") as f:
            yaml.dump(doc, f)
    return changes + notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fix", action="store_true", help="rewrite dvc.yaml's code deps in place")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root holding dvc.yaml")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    reports = check(root)
    if args.fix:
        for line in fix(root, reports) or ["dvc.yaml: code deps already match the imports"]:
            print(line)
        reports = check(root)
    bad = [r for r in reports if not r.ok]
    if bad:
        print(format_report(reports))
    else:
        print(f"{len(reports)} stages: code deps match the imports")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
