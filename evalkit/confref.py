"""The configuration reference (docs/reference/configuration.md), generated from the structured-config schemas.

Every key, its type, its default and its ``#:`` comment come from the dataclasses themselves (the top-level schema
and each plug-in's ``Options``/``Params``), so the reference cannot drift from the code; a test compares the
committed page with this output.

    python -m evalkit.confref > docs/reference/configuration.md
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import typing
from typing import Any

from evalkit.config import CacheConfig, Config, ModelConfig, ResultsConfig
from evalkit.contract import GROUPS, PrecisionOptions, load, plugins


def comments(cls: type) -> dict[str, str]:
    """Field name -> the ``#:`` comment lines right above it in the class's source (its own and its bases')."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        pending: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            field = re.match(r"(\w+)\s*:", stripped)
            if field and pending:
                found[field[1]] = " ".join(pending)
            pending = []
    return found


def _type(tp: Any) -> str:
    text = str(tp) if not isinstance(tp, type) else tp.__name__
    return re.sub(r"typing\.|evalkit\.[\w.]+\.|<class '|'>", "", text).replace("NoneType", "None")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = field.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(see below)"
    if isinstance(value, enum.Enum):
        value = value.name
    return f"`{value!r}`" if value not in ("???",) else "required"


def table(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    """One Markdown table of a schema's keys; nested dataclasses follow as their own tables."""
    said = comments(cls)
    hints = typing.get_type_hints(cls)
    rows, nested = ["| key | type | default | what it does |", "|---|---|---|---|"], []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        hint = hints.get(field.name, field.type)
        key = f"{prefix}{field.name}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            nested.append((hint, f"{key}."))
        rows.append(f"| `{key}` | {_type(hint)} | {_default(field)} | {said.get(field.name, '')} |")
    out = rows + [""]
    for klass, sub in nested:
        out += [f"#### `{sub[:-1]}`", ""] + table(klass, sub)
    return out


def _doc(module: Any) -> str:
    return (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")


def markdown() -> str:
    lines = ["# Configuration reference", "",
             "Every key `python -m evalkit` takes (`key=value` on the command line, or in a YAML of your config "
             "folder), generated from the code's schemas: a misspelt key or a wrong type stops the run before any "
             "work. A config group (`model=`, `runtime=`, ...) picks a YAML of `conf/`, which sets these keys.", "",
             "## Top level", ""]
    lines += table(Config, "", skip=("model", "preprocess", "runtime", "dataset", "precision", "results", "cache"))
    for title, cls, prefix in (("model", ModelConfig, "model."), ("precision", PrecisionOptions, "precision."),
                               ("results", ResultsConfig, "results."), ("cache", CacheConfig, "cache.")):
        lines += [f"## `{title}`", ""] + table(cls, prefix)
    for title, kind, attr, prefix in (("preprocess: recipe families", "recipe", "Params", "preprocess."),
                                      ("runtime", "runtime", "Options", "runtime."),
                                      ("dataset: readers", "reader", "Options", "dataset.")):
        lines += [f"## `{title}`", ""]
        for name in plugins(GROUPS[kind]):
            module = load(GROUPS[kind], name)
            lines += [f"### `{title.split(':')[0]}={name}`", "", _doc(module), ""]
            lines += table(getattr(module, attr), prefix)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    argparse.ArgumentParser(prog="python -m evalkit.confref", description="Print the configuration reference "
                            "(Markdown), generated from the schemas.",
                            epilog="example: python -m evalkit.confref > docs/reference/configuration.md").parse_args(argv)
    print(markdown(), end="")


if __name__ == "__main__":
    main()
