"""Shapes for ``w.annotate``: checked in Python, drawn by the view over the echo.

A shape is a dict in the frame's pixel coordinates:

* ``{"type": "box", "x", "y", "w", "h", "label"?: str, "color"?: css}``
* ``{"type": "text", "x", "y", "text": str, "color"?: css}``
* ``{"type": "points", "points": [[x, y], ...], "color"?: css, "closed"?: bool}``

:func:`check_shapes` returns JSON-ready copies or raises ``ValueError`` naming the bad field,
so that nothing malformed reaches the view (which also ignores what it can't draw).
"""

from __future__ import annotations

import math
from typing import Any

MAX_SHAPES = 1000
MAX_POINTS = 10_000
MAX_TEXT = 200

_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "box": (frozenset({"x", "y", "w", "h"}), frozenset({"label", "color"})),
    "text": (frozenset({"x", "y", "text"}), frozenset({"color"})),
    "points": (frozenset({"points"}), frozenset({"color", "closed"})),
}


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, not {value!r}")
    return number


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{where} must be a string of at most {MAX_TEXT} characters")
    return value


def check_shape(shape: object, index: int = 0) -> dict[str, Any]:
    """One shape, checked; see the module docstring."""
    where = f"shapes[{index}]"
    if not isinstance(shape, dict):
        raise ValueError(f"{where} must be a dict, not {type(shape).__name__}")
    kind = shape.get("type")
    if kind not in _FIELDS:
        raise ValueError(f"{where}['type'] must be 'box', 'text' or 'points', not {kind!r}")
    required, optional = _FIELDS[kind]
    missing = required - shape.keys()
    if missing:
        raise ValueError(f"{where} ({kind}) needs {sorted(missing)}")
    unknown = shape.keys() - required - optional - {"type"}
    if unknown:
        raise ValueError(f"{where} ({kind}) has unknown keys {sorted(unknown)}")
    checked: dict[str, Any] = {"type": kind}
    for key in sorted(required & {"x", "y", "w", "h"}):
        checked[key] = _number(shape[key], f"{where}[{key!r}]")
    if kind == "box" and (checked["w"] < 0 or checked["h"] < 0):
        raise ValueError(f"{where}: 'w' and 'h' must not be negative")
    for key in ("label", "text", "color"):
        if key in shape:
            checked[key] = _string(shape[key], f"{where}[{key!r}]")
    if kind == "points":
        points = shape["points"]
        if not isinstance(points, (list, tuple)) or not 0 < len(points) <= MAX_POINTS:
            raise ValueError(f"{where}['points'] must be a list of 1 to {MAX_POINTS} [x, y]")
        checked["points"] = [[_number(p[0], f"{where}['points'][{i}][0]"),
                              _number(p[1], f"{where}['points'][{i}][1]")]
                             if isinstance(p, (list, tuple)) and len(p) == 2 else
                             _bad_point(where, i, p) for i, p in enumerate(points)]
        if "closed" in shape:
            if not isinstance(shape["closed"], bool):
                raise ValueError(f"{where}['closed'] must be True or False")
            checked["closed"] = shape["closed"]
    return checked


def _bad_point(where: str, index: int, point: object) -> list[float]:
    raise ValueError(f"{where}['points'][{index}] must be [x, y], not {point!r}")


def check_shapes(shapes: object) -> list[dict[str, Any]]:
    """A list of shapes, checked; see the module docstring."""
    if not isinstance(shapes, (list, tuple)):
        raise ValueError(f"shapes must be a list of dicts, not {type(shapes).__name__}")
    if len(shapes) > MAX_SHAPES:
        raise ValueError(f"at most {MAX_SHAPES} shapes at a time, not {len(shapes)}")
    return [check_shape(shape, i) for i, shape in enumerate(shapes)]
