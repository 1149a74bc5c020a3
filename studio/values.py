"""One parser per kind of value a person or a client types: sizes, whole numbers, numbers, switches, colour
counts.

Why here and only here: the same value arrives as "32x32" from the CLI, [32, 32] from JSON, (32, 32) from
Python and two sliders from the UI. Every params dataclass parses its fields through these functions, so a
bad value gets the same sentence in every front end, and a JSON `true` or `2.7` is never taken for a count.
Like `studio.limits`, this module imports nothing from the project, so every room may use it.
"""

from __future__ import annotations

import numbers
from typing import Any


class ParamsError(ValueError):
    """A parameter a person typed is wrong; the message says which and why."""


def parse_int(value: Any, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number: an int, or text holding one. Booleans and fractions are refused, not rounded."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParamsError(f"{what} must be a whole number{_range(lo, hi)}, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamsError(f"{what} must be a whole number{_range(lo, hi)}, got {value}")
    return value


def parse_float(value: Any, what: str, lo: float | None = None, hi: float | None = None) -> float:
    """A number (int, float or numeric text). Booleans, NaN and infinities are refused."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ParamsError(f"{what} must be a number{_range(lo, hi)}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value or abs(value) == float("inf"):
        raise ParamsError(f"{what} must be a number{_range(lo, hi)}, got {value!r}")
    value = float(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamsError(f"{what} must be a number{_range(lo, hi)}, got {value:g}")
    return value


def parse_bool(value: Any, what: str) -> bool:
    """true or false, as a real boolean: the text "yes" or the number 1 is not taken for a switch."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool, without importing numpy
        return bool(value)
    raise ParamsError(f"{what} must be true or false, got {value!r}")


def parse_size(value: Any, what: str, lo: int = 1, hi: int | None = None) -> tuple[int, int]:
    """(width, height) from "32x32", "32X32", "32 x 32", [32, 32] or (32, 32); each side in lo..hi."""
    parts = value.lower().replace(" ", "").split("x") if isinstance(value, str) else value
    try:
        w, h = parts
        w, h = parse_int(w, what), parse_int(h, what)
    except (TypeError, ValueError):
        raise ParamsError(f"{what} must be WxH (e.g. 32x32), a pair of whole numbers; got {value!r}") from None
    if w < lo or h < lo or (hi is not None and (w > hi or h > hi)):
        top = f" and {hi}x{hi}" if hi is not None else " and any size"
        raise ParamsError(f"{what} must be between {lo}x{lo}{top}, got {w}x{h}")
    return w, h


def parse_pair(value: Any, what: str, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """(a, b) numbers from "32x32", "32.5,32", [32, 32], (5, 0) or one number (both the same): a cell size or
    an offset in input pixels, which need not be whole."""
    if isinstance(value, str):
        value = value.lower().replace(" ", "").replace("x", ",").split(",")
        value = value * 2 if len(value) == 1 else value  # "32": square
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ParamsError(f"{what} must be a pair of numbers (w, h), got {value!r}") from None
    return parse_float(a, what, lo, hi), parse_float(b, what, lo, hi)


def parse_optional_size(value: Any, what: str, lo: int = 1, hi: int | None = None) -> tuple[int, int] | None:
    """A size, or None for blank: None, "" and "auto" (the UI's and CLI's way of saying 'detect it')."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "auto"}):
        return None
    return parse_size(value, what, lo, hi)


def parse_colors(value: Any, lo: int, hi: int) -> int | None:
    """A palette size, or None for automatic (None, "" or "auto")."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "auto"}):
        return None
    try:
        n = parse_int(value, "colors")
    except ParamsError:
        raise ParamsError(f"colors must be an integer or 'auto', got {value!r}") from None
    if not lo <= n <= hi:
        raise ParamsError(f"colors must be between {lo} and {hi}, got {n}")
    return n


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" of at least {lo:g}"
    return f" of at most {hi:g}" if hi is not None else ""
