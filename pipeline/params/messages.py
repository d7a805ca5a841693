"""A pydantic ValidationError of params.yaml as one line: the dotted key, what is wrong, what is valid."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pipeline.errors import choices_hint, closest
from pipeline.params.common import KEY_ERROR


def describe(exc: ValidationError, root: type[BaseModel], source: str) -> str:
    """One line for the first error of validating `root`; '(and N more)' counts the others."""
    errors = exc.errors()
    err = errors[0]
    if err["type"] == "missing":  # a misspelled key of the same entry explains a missing one best
        entry = err["loc"][:-1]
        err = next((e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == entry), err)
    loc = tuple(err["loc"])
    shown, at = walk(root, loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    kind = err["type"]
    if kind == KEY_ERROR:  # a check of a whole entry about one of its keys
        shown += err["ctx"]["key"].split(".")
        return f"{source}: {'.'.join(shown)}: {err['ctx']['message']}{more}"
    key = ".".join(shown)
    if kind in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type") and _tags(at):
        tag, kinds = _tags(at)
        value = err["input"].get(tag) if isinstance(err["input"], dict) else None
        if kind == "model_attributes_type":
            return f"{source}: {key}: expected a mapping with a '{tag}' key{more}"
        what = "missing" if value is None else f"unknown {tag} '{value}'"
        return f"{source}: {key}.{tag}: {what}; {choices_hint(str(value), kinds)}{more}"
    if kind == "extra_forbidden":
        _, parent = walk(root, loc[:-1])
        valid = _fields(parent)
        hint = f"; valid keys: {', '.join(valid)}{closest(str(loc[-1]), valid)}" if valid else ""
        return f"{source}: {key}: unknown key{hint}{more}"
    if kind == "missing":
        return f"{source}: {key}: required key is missing{more}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "literal_error" and "input" in err:
        options = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        choices = [o.strip() for o in options.replace(" or ", ",").split(",") if o.strip()]
        msg = f"got {err['input']!r}; {choices_hint(str(err['input']), choices)}"
    elif "input" in err and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return f"{source}: {key or '(top level)'}: {msg}{more}"


def walk(root: Any, loc: tuple) -> tuple[list[str], Any]:
    """The parts of `loc` a user wrote, and the annotation found at its end (None where lost).

    Pydantic puts into the path what users never wrote: the tag of a tagged union (a dataset's
    source, a model's architecture) and the member names of a plain union (`list[float]`).
    """
    shown: list[str] = []
    current = root
    for part in loc:
        tags = _tags(current)
        if tags and str(part) in tags[1]:
            current = tags[1][str(part)]
            continue
        if isinstance(part, str) and "[" in part:  # a member of a plain union
            continue
        shown.append(str(part))
        current = _strip(current)
        if typing.get_origin(current) in (list, dict, tuple):
            current = typing.get_args(current)[-1]  # `part` is an index or a key
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            current = None
    return shown, current


def _strip(annotation: Any) -> Any:
    """X for Annotated[X, ...] and for X | None; anything else unchanged."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _tags(annotation: Any) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """(discriminator, {tag: class}) of a tagged union such as a `datasets:` entry, else None."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    union, *metadata = typing.get_args(annotation)
    tag = next((m.discriminator for m in metadata if isinstance(m, FieldInfo) and m.discriminator), None)
    if not isinstance(tag, str):
        return None
    kinds = {}
    for member in typing.get_args(union):
        for value in typing.get_args(member.model_fields[tag].annotation):
            kinds[value] = member
    return tag, kinds


def _fields(annotation: Any) -> list[str]:
    current = _strip(annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
