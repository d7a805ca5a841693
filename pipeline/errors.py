"""The one kind of error a user can cause, and how a stage reports it."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable


class UserError(Exception):
    """A mistake in params, input files or arguments: reported as one line, without a traceback."""


def closest(word: str, choices: Iterable[str]) -> str:
    """' (closest: x)' for the best near match of `word`, or ''."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (closest: {matches[0]})" if matches else ""


def choices_hint(word: str, choices: Iterable[str]) -> str:
    """'valid: a, b, c (closest: b)' for an error message."""
    choices = sorted(str(c) for c in choices)
    return f"valid: {', '.join(choices)}{closest(word, choices)}"


def run_cli(main: Callable[[], None]) -> None:
    """Run a command-line entry point, its stderr without TensorFlow's known noise (pipeline.noise);
    a UserError ends it with one line on stderr and exit code 2."""
    from pipeline.noise import stderr_filtered

    try:
        with stderr_filtered():
            main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
