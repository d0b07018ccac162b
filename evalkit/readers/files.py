"""An explicit list of ``path label`` lines in the config (the demo's photos; label = index or wnid)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.readers._common import parse


@dataclass
class Options(DatasetOptions):
    layout: str = "files"
    #: "path label" lines; paths absolute or relative to the working directory
    files: list[str] = field(default_factory=list)


def read(options: Options, classes: Classes) -> list[Sample]:
    return parse(list(options.files), Path("."), f"dataset {options.name} files", classes, confine=False)
