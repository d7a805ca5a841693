"""A verdict on a reproduction: the workspace's headline metrics against a commit's (`make verify`).

Another CPU (AVX2 against AVX-512 paths of oneDNN), a GPU or another library build moves low-order
digits of a trained model's losses, so dvc.lock and metrics.json differ from the committed ones
although nothing is wrong. This says which it is:

- "byte-identical": every output hash in dvc.lock is the committed one;
- "reproduced": every headline metric (`dvc metrics diff`) is within its tolerance (params.yaml
  `verify.tolerance`), and the stages whose outputs are byte-identical are named;
- "not reproduced": each metric outside its tolerance is named, with both values (exit status 1).

    python -m pipeline.tools.verify [--rev HEAD]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.errors import UserError, run_cli
from pipeline.params import Verify

DVC = Path(sys.executable).parent / "dvc"  # the venv's, beside this Python


@dataclass
class Verdict:
    verdict: str  # "byte-identical", "reproduced" or "not reproduced"
    outside: list[str] = field(default_factory=list)  # one line per metric outside its tolerance
    within: list[str] = field(default_factory=list)  # one line per metric that moved, within it
    identical_stages: list[str] = field(default_factory=list)
    changed_stages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict != "not reproduced"

    def report(self, rev: str) -> str:
        lines = []
        if self.verdict == "byte-identical":
            lines.append(f"byte-identical: every output of every stage has the hash {rev} recorded")
        elif self.verdict == "reproduced":
            lines.append(f"reproduced: every headline metric is within its tolerance of {rev}'s")
        else:
            lines.append(f"not reproduced: {len(self.outside)} metric(s) outside their tolerance of {rev}'s")
            lines += [f"  {line}" for line in self.outside]
        if self.within:
            lines.append("moved within tolerance:")
            lines += [f"  {line}" for line in self.within]
        if self.verdict != "byte-identical":
            if self.identical_stages:
                lines.append(f"byte-identical stages: {', '.join(self.identical_stages)}")
            if self.changed_stages:
                lines.append(f"stages with other bytes: {', '.join(self.changed_stages)}")
        return "\n".join(lines)


def _dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run([str(DVC), *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"dvc {' '.join(args)}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout


def output_hashes(lock: dict) -> dict[str, dict[str, str]]:
    """{stage: {output path: hash}} of a dvc.lock mapping."""
    return {
        stage: {o["path"]: o.get("md5") or o.get("hash", "") for o in entry.get("outs", [])}
        for stage, entry in (lock or {}).get("stages", {}).items()
    }


def committed_lock(repo: Path, rev: str) -> dict:
    proc = subprocess.run(["git", "show", f"{rev}:dvc.lock"], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"dvc.lock: not in git at {rev}; commit a reproduced pipeline first")
    return yaml.safe_load(proc.stdout)


def metric_of(path: str, key: str) -> tuple[str, str]:
    """(model, metric) of a `dvc metrics diff` key: reports/metrics.json's keys are `<model>.<metric>`
    (the metrics stage); a commit before it had a metrics file per model (reports/models/<model>/)."""
    if "." in key:
        owner, _, metric = key.partition(".")
        return owner, metric
    return Path(path).parent.name, key


def judge(diff: dict, tolerance: Verify) -> tuple[list[str], list[str]]:
    """(outside, within) lines from `dvc metrics diff --all --json`'s mapping."""
    outside, within = [], []
    for path, metrics in sorted(diff.items()):
        for key, change in sorted(metrics.items()):
            old, new = change.get("old"), change.get("new")
            where = f"{path}: {key}"
            owner, metric = metric_of(path, key)
            allowed = tolerance.allowed(owner, metric)
            if allowed is None:
                raise UserError(
                    f"params.yaml: verify.tolerance: no tolerance for {metric} ({key} in {path}); "
                    f"add `{metric}: <largest absolute difference>` or `{owner}.{metric}: ...`"
                )
            if old == new:
                continue
            if old is None or new is None or isinstance(old, str) or isinstance(new, str):
                outside.append(f"{where}: {old} -> {new}")
                continue
            moved = abs(float(new) - float(old))
            line = f"{where}: {old:.6g} -> {new:.6g} (difference {moved:.3g}, tolerance {allowed:g})"
            (outside if not moved <= allowed or math.isnan(moved) else within).append(line)
    return outside, within


def verify(repo: Path, tolerance: Verify, rev: str = "HEAD") -> Verdict:
    """The verdict on the workspace of `repo` against `rev`; the pipeline must be up to date."""
    repo = Path(repo)
    status = json.loads(_dvc(repo, "status", "--json") or "{}")
    if status:
        raise UserError(
            f"the pipeline is not up to date ({', '.join(sorted(status)[:5])}); run `dvc repro` first"
        )
    diff = json.loads(_dvc(repo, "metrics", "diff", rev, "--all", "--json") or "{}")
    outside, within = judge(diff, tolerance)
    old = output_hashes(committed_lock(repo, rev))
    lock_file = repo / "dvc.lock"
    new = output_hashes(yaml.safe_load(lock_file.read_text()) if lock_file.is_file() else {})
    stages = sorted(set(old) | set(new))
    identical = [s for s in stages if old.get(s) == new.get(s)]
    changed = [s for s in stages if old.get(s) != new.get(s)]
    if outside:
        verdict = "not reproduced"
    elif not changed and not within:
        verdict = "byte-identical"
    else:
        verdict = "reproduced"
    return Verdict(verdict, outside, within, identical, changed)


def main(argv: list[str] | None = None) -> int:
    from pipeline.params import load

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rev", default="HEAD", help="the commit whose results are the reference")
    args = parser.parse_args(argv)
    params = load()
    if params.verify is None:
        raise UserError("params.yaml: verify: missing; add verify.tolerance (see the project's params.yaml)")
    verdict = verify(Path.cwd(), params.verify, args.rev)
    print(verdict.report(args.rev))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
