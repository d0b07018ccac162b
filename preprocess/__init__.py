"""Preprocessing recipes: one module per recipe family.

A family module defines
- ``Params``: a dataclass of the recipe's parameters (its ``family`` field names the module),
- ``pixels(data, params)``: encoded image bytes -> the resized, cropped uint8 HWC image, a pure function,
- ``normalize(pixels, params)``: that image -> the float32 CHW array the model takes,
- ``output_shape(params)``: the (C, H, W) that ``normalize`` returns,
- ``LIBRARIES``: the distributions whose versions can change the pixels.

The split lets the tensor cache keep uint8 pixels (a quarter of float32) while every
recipe stays bit-exact: ``normalize`` is deterministic arithmetic on those pixels.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib
import json
import pkgutil
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from types import ModuleType
from typing import Any, Callable

import numpy as np

from evalkit.errors import UserError


def families() -> dict[str, ModuleType]:
    """Every recipe family module in this package, by name."""
    return {
        m.name: importlib.import_module(f"{__name__}.{m.name}")
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_")
    }


def params_dict(params: Any) -> dict[str, Any]:
    """Plain JSON-able parameters (enums by name) for fingerprints, metadata and printing."""
    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.name
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Recipe:
    """A family's transform bound to its parameters; picklable for worker processes."""

    params: Any

    @property
    def family(self) -> str:
        return self.params.family

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.family}")

    @property
    def fn(self) -> Callable[[bytes], np.ndarray]:
        """bytes -> float32 CHW, picklable (for worker processes)."""
        return partial(transform, params=self.params)

    @property
    def pixels_fn(self) -> Callable[[bytes], np.ndarray]:
        """bytes -> uint8 HWC pixels, picklable."""
        return partial(self.module.pixels, params=self.params)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        return self.module.normalize(pixels, self.params)

    def __call__(self, data: bytes) -> np.ndarray:
        return transform(data, self.params)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return tuple(self.module.output_shape(self.params))

    @property
    def libraries(self) -> dict[str, str]:
        return {d: _version(d) for d in self.module.LIBRARIES}

    @property
    def fingerprint(self) -> str:
        """Hash of family, parameters and pixel-changing library versions: keys caches, goes in every run."""
        blob = json.dumps({"params": params_dict(self.params), "libraries": self.libraries}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line per parameter, as timm prints its resolved data config."""
        lines = [f"  {k}: {v}" for k, v in params_dict(self.params).items()]
        lines.append("  libraries: " + ", ".join(f"{k} {v}" for k, v in self.libraries.items()))
        lines.append(f"  fingerprint: {self.fingerprint}")
        return "\n".join(lines)


def transform(data: bytes, params: Any) -> np.ndarray:
    """The whole recipe: pixels, then normalize."""
    module = importlib.import_module(f"{__name__}.{params.family}")
    return module.normalize(module.pixels(data, params), params)


def build(params: Any) -> Recipe:
    """The recipe for a family's (validated) ``Params``."""
    if params.family not in families():
        raise UserError(
            f"unknown preprocessing family {params.family!r}; valid: {', '.join(sorted(families()))}"
        )
    return Recipe(params)
