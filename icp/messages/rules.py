"""Validation rules for wire fields: each rule checks and converts one decoded JSON value.

Hand-written rather than pydantic/jsonschema because the core has no dependencies at all (it must
import on a bare interpreter on the Pi) and the rules are few.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from icp.errors import ProtocolError

Rule = Callable[[str, Any], Any]
E = TypeVar("E", bound=Enum)

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_SEQ = 2**53 - 1  # seq < 2^53: exact in every JSON implementation
MAX_TEXT = 2000
MAX_WORDS = 400


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(lo: int = 0, hi: int = 2**63) -> Rule:
    def check(path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(path, f"must be an integer, got {_describe(value)}")
        if not lo <= value <= hi:
            raise ProtocolError(path, f"must be between {lo} and {hi}, got {value}")
        return value

    return check


def number(lo: float = 0.0, hi: float = 1e12) -> Rule:
    def check(path: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(path, f"must be a number, got {_describe(value)}")
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise ProtocolError(path, "must be finite")
        if not lo <= value <= hi:
            raise ProtocolError(path, f"must be between {lo} and {hi}, got {value}")
        return float(value)

    return check


def boolean() -> Rule:
    def check(path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ProtocolError(path, f"must be true or false, got {_describe(value)}")
        return value

    return check


def text(max_len: int = MAX_TEXT, min_len: int = 0) -> Rule:
    def check(path: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ProtocolError(path, f"must be a string, got {_describe(value)}")
        if not min_len <= len(value) <= max_len:
            raise ProtocolError(path, f"length must be {min_len}..{max_len}, got {len(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(path, "must be valid Unicode (no lone surrogates)") from None
        return value

    return check


def ident(pattern: re.Pattern[str] = ID_PATTERN) -> Rule:
    def check(path: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ProtocolError(path, f"must match {pattern.pattern}, got {_describe(value)}")
        return value

    return check


def enum(kind: type[E], members: frozenset[E] | None = None) -> Rule:
    """One of the enum's values (only `members`, when given: a wire field may allow a subset)."""
    allowed_members = [m for m in kind if members is None or m in members]  # type: ignore[attr-defined]
    allowed = ", ".join(str(m.value) for m in allowed_members)

    def check(path: str, value: Any) -> E:
        try:
            member = kind(value)
        except (ValueError, TypeError):
            raise ProtocolError(path, f"must be one of {allowed}, got {_describe(value)}") from None
        if members is not None and member not in members:
            raise ProtocolError(path, f"must be one of {allowed}, got {_describe(value)}")
        return member

    return check


def optional(rule: Rule) -> Rule:
    def check(path: str, value: Any) -> Any:
        return None if value is None else rule(path, value)

    return check


def list_of(rule: Rule, max_items: int, unique: bool = False) -> Rule:
    def check(path: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ProtocolError(path, f"must be a list, got {_describe(value)}")
        if len(value) > max_items:
            raise ProtocolError(path, f"at most {max_items} items, got {len(value)}")
        items = tuple(rule(f"{path}[{i}]", v) for i, v in enumerate(value))
        if unique and len(set(items)) != len(items):
            raise ProtocolError(path, "items must not repeat")
        return items

    return check


def obj(fields: dict[str, Rule], build: Callable[..., Any], optional_keys: frozenset[str] = frozenset()) -> Rule:
    """A nested object with exactly these keys (those in optional_keys may be absent)."""

    def check(path: str, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ProtocolError(path, f"must be an object, got {_describe(value)}")
        return build(**check_fields(path, value, fields, optional_keys))

    return check


def check_fields(
    path: str, value: dict[str, Any], fields: dict[str, Rule], optional_keys: frozenset[str] = frozenset()
) -> dict[str, Any]:
    prefix = f"{path}." if path else ""
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ProtocolError(prefix + unknown[0], "unknown field")
    out: dict[str, Any] = {}
    for name, rule in fields.items():
        if name not in value:
            if name in optional_keys:
                continue
            raise ProtocolError(prefix + name, "missing")
        out[name] = rule(prefix + name, value[name])
    return out
