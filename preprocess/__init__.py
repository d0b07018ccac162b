"""Preprocessing recipes: one module per recipe family, registered in the ``evalkit.recipes`` entry points.

A family module defines (see ``evalkit.contract.Recipe``)
- ``Params``: a dataclass of the recipe's parameters (its ``family`` field names the entry point),
- ``pixels(data, params)``: encoded image bytes -> the resized, cropped uint8 HWC image, a pure function,
- ``normalize(pixels, params)``: that image -> the float32 CHW array the model takes,
- ``output_shape(params)``: the (C, H, W) that ``normalize`` returns,
- ``LIBRARIES``: the distributions whose versions can change the pixels.

The split lets the tensor cache keep uint8 pixels (a quarter of float32) while every
recipe stays bit-exact: ``normalize`` is deterministic arithmetic on those pixels.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from evalkit.contract import GROUPS, Recipe, load, params_dict, plugins, transform
from evalkit.errors import UserError

__all__ = ["Recipe", "build", "families", "params_dict", "transform"]


def families() -> dict[str, ModuleType]:
    """Every registered recipe family module, by name."""
    return {name: load(GROUPS["recipe"], name) for name in plugins(GROUPS["recipe"])}


def build(params: Any) -> Recipe:
    """The recipe for a family's (validated) ``Params``."""
    names = plugins(GROUPS["recipe"])
    if params.family not in names:
        raise UserError(f"unknown preprocessing family {params.family!r}; valid: {', '.join(sorted(names))}")
    return Recipe(params)
