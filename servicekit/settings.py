"""TOML settings into frozen dataclasses, strictly: the one loader of `segue-server` and `segue-device`.

cattrs (well kept, pure Python, small enough for a Pi) structures the parsed TOML document into the
settings dataclasses, nested sections included, so a section written as an inline table
(`[engine] segmenter = {min_words = 2}`) becomes its dataclass rather than a plain dict. Unknown
keys are refused (`forbid_extra_keys`); scalars are strict (`icp.settings.strict_value`: `"3"` is
not a number, `1` is not `true`); a dataclass's own `__post_init__` checks still run. The first
problem found comes back as one `SettingsError` naming the key: `[engine] lookahead_ms: must be a
number, got 'abc'`.

Its own package because the device and the server may not import each other, and the core (`icp`)
imports nothing outside the standard library; it imports only `icp` and cattrs.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import cattrs
from cattrs.errors import ForbiddenExtraKeysError

from icp.settings import STRICT_SCALARS, SettingsError, strict_value

T = TypeVar("T")

__all__ = ["SettingsError", "read_toml", "structure"]


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind in STRICT_SCALARS:
        conv.register_structure_hook(kind, strict_value)
    conv.register_structure_hook(Path, lambda v, _t: Path(strict_value(v, str)))
    return conv


_CONVERTER = _converter()


def _describe(e: BaseException, type_: Any) -> str:
    if isinstance(e, ForbiddenExtraKeysError):
        known = ", ".join(sorted(f.name for f in fields(e.cl))) if hasattr(e.cl, "__dataclass_fields__") else ""
        return f"unknown setting(s) {', '.join(sorted(e.extra_fields))} (known: {known})"
    if isinstance(e, KeyError):
        return "required"
    if isinstance(type_, type) and issubclass(type_, Enum):
        return f"must be one of {', '.join(str(m.value) for m in type_)}"
    return str(e) or type(e).__name__


def explain(exc: BaseException, sections: tuple[str, ...]) -> str:
    """cattrs' first problem as `[section] key: what is wrong` (sections: the document's tables)."""
    first = (cattrs.transform_error(exc, format_exception=_describe)[0] if isinstance(exc, BaseExceptionGroup)
             else _describe(exc, None))
    msg, sep, where = first.rpartition(" @ ")
    if not sep:
        return first
    parts = [p for p in where.removeprefix("$").split(".") if p]
    if parts and msg.startswith("["):  # a section's own check names itself
        return msg
    if len(parts) >= 2:
        return f"[{parts[0]}] {'.'.join(parts[1:])}: {msg}"
    if parts:
        return f"[{parts[0]}] {msg}" if parts[0] in sections else f"{parts[0]}: {msg}"
    return msg


def structure(data: dict[str, Any], cls: type[T]) -> T:
    """`data` (a parsed TOML document) as `cls`; `SettingsError` names the first bad key."""
    hints = get_type_hints(cls) if is_dataclass(cls) else {}
    sections = tuple(name for name, t in hints.items() if is_dataclass(t))
    try:
        return _CONVERTER.structure(data, cls)
    except (BaseExceptionGroup, TypeError, ValueError) as exc:
        raise SettingsError(explain(exc, sections)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed file, or a `SettingsError` that says what is wrong with it."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
