"""What the ONNX transforms share: lazy imports that name the extra, and the ``precision.exclude`` check."""

from __future__ import annotations

from typing import Any

from evalkit.errors import UserError


def onnx() -> Any:
    try:
        import onnx as module
    except ImportError as e:
        raise UserError("precision transforms edit the ONNX graph: pip install 'evalkit[ort,torch]' (onnx)") from e
    return module


def split_exclude(model: Any, exclude: list[str]) -> tuple[list[str], list[str]]:
    """``precision.exclude`` as (node names, op types) of ``model``; a name that is neither is a UserError."""
    names = {n.name for n in model.graph.node}
    ops = {n.op_type for n in model.graph.node}
    unknown = [e for e in exclude if e not in names and e not in ops]
    if unknown:
        raise UserError(f"precision.exclude={unknown} names no node and no op type of the model; "
                        f"give node names (e.g. {sorted(names)[0]!r}) or op types (e.g. {sorted(ops)[0]!r})")
    return [e for e in exclude if e in names], [e for e in exclude if e in ops and e not in names]
