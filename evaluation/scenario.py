"""Scenario files (shared/SCENARIOS.md): strict parsing into frozen dataclasses.

Anyone can write a scenario, so a mistake must never pass silently: unknown keys, wrong types,
out-of-range values and duplicate YAML keys are all rejected with a `ScenarioError` whose message
starts with the path of the offending field (`turns[2].after: ...`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DISPOSITIONS_SPEAKING = ("BRANCH", "MODIFY", "CANCEL", "ABSORB")
DISPOSITIONS_IDLE = ("RESUME", "DROP", "NEW")
EXPECTATIONS = DISPOSITIONS_SPEAKING + DISPOSITIONS_IDLE
CONDITIONS = ("heard_words", "heard_ms", "reply_done", "wait_s")


class ScenarioError(ValueError):
    """A scenario does not follow the format; `field` names where."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")


@dataclass(frozen=True)
class AudioSpec:
    sample_rate: int = 16000
    buffer_ms: float = 20.0
    output_latency_ms: float = 100.0
    jitter_ms: float = 0.0
    echo_gain: float = 0.0
    echo_delay_ms: float = 20.0


@dataclass(frozen=True)
class NetworkSpec:
    delay_ms: tuple[float, float] = (0.0, 0.0)
    drop_heartbeats: float = 0.0
    disconnect_at_s: float | None = None
    reconnect_after_s: float | None = None


@dataclass(frozen=True)
class LlmRule:
    """`match` is None for the default rule."""

    reply: str
    match: str | None = None

    def as_server_rule(self) -> dict[str, str]:
        return {"default": self.reply} if self.match is None else {"match": self.match, "reply": self.reply}


@dataclass(frozen=True)
class After:
    """Exactly one condition: `kind` is one of CONDITIONS."""

    kind: str
    value: float

    def describe(self) -> str:
        return f"{self.kind}: {'true' if self.kind == 'reply_done' else _num(self.value)}"


@dataclass(frozen=True)
class Turn:
    say: str | None = None  # None: only wait for `after` (e.g. a last turn that waits for the reply)
    after: After | None = None  # None: at once after the previous turn (first turn: at start)
    expect: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    turns: tuple[Turn, ...]
    description: str = ""
    seed: int = 0
    audio: AudioSpec = AudioSpec()
    network: NetworkSpec = NetworkSpec()
    llm: tuple[LlmRule, ...] = ()
    source: str | None = None

    def llm_rules(self) -> list[dict[str, str]]:
        return [rule.as_server_rule() for rule in self.llm]


# -- parsing ------------------------------------------------------------------------------------------
def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML keeps the last one silently)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ScenarioError(str(key), f"duplicate key (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _keys(data: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ScenarioError(path, f"must be a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            raise ScenarioError(f"{path}.{key}" if path else str(key),
                                f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in data:
            raise ScenarioError(f"{path}.{key}" if path else key, "is required")
    return data


def _number(data: dict[str, Any], key: str, path: str, default: float, lo: float = 0.0,
            hi: float = math.inf, integer: bool = False, positive: bool = False) -> float:
    if key not in data:
        return default
    value, where = data[key], f"{path}.{key}" if path else key
    if integer and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ScenarioError(where, f"must be an integer, got {value!r}")
    if not _is_number(value):
        raise ScenarioError(where, f"must be a number, got {value!r}")
    if value < lo or value > hi or (positive and value <= 0):
        bound = f"> {_num(lo)}" if positive else f">= {_num(lo)}"
        raise ScenarioError(where, f"must be {bound}" + (f" and <= {_num(hi)}" if math.isfinite(hi) else "")
                            + f", got {value!r}")
    return value


def _string(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ScenarioError(where, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ScenarioError(where, "must not be empty")
    return value


def _audio(data: Any) -> AudioSpec:
    d = _keys(data, "audio", ("sample_rate", "buffer_ms", "output_latency_ms", "jitter_ms", "echo_gain",
                              "echo_delay_ms"))
    spec = AudioSpec(
        sample_rate=int(_number(d, "sample_rate", "audio", 16000, 8000, 48000, integer=True)),
        buffer_ms=float(_number(d, "buffer_ms", "audio", 20.0, 0.0, 1000.0, positive=True)),
        output_latency_ms=float(_number(d, "output_latency_ms", "audio", 100.0, 0.0, 10000.0)),
        jitter_ms=float(_number(d, "jitter_ms", "audio", 0.0, 0.0, 1000.0)),
        echo_gain=float(_number(d, "echo_gain", "audio", 0.0, 0.0, 10.0)),
        echo_delay_ms=float(_number(d, "echo_delay_ms", "audio", 20.0, 0.0, 10000.0)),
    )
    if spec.sample_rate * spec.buffer_ms / 1000 < 1:
        raise ScenarioError("audio.buffer_ms", f"{_num(spec.buffer_ms)} ms is less than one sample "
                                               f"at {spec.sample_rate} Hz")
    return spec  # a buffer is a whole number of samples: the sound card rounds buffer_ms


def _network(data: Any) -> NetworkSpec:
    d = _keys(data, "network", ("delay_ms", "drop_heartbeats", "disconnect_at_s", "reconnect_after_s"))
    delay = (0.0, 0.0)
    if "delay_ms" in d:
        raw = d["delay_ms"]
        if not isinstance(raw, list) or len(raw) != 2 or not all(_is_number(v) for v in raw):
            raise ScenarioError("network.delay_ms", f"must be a list of two numbers [min, max], got {raw!r}")
        if not 0 <= raw[0] <= raw[1]:
            raise ScenarioError("network.delay_ms", f"must satisfy 0 <= min <= max, got {raw!r}")
        delay = (float(raw[0]), float(raw[1]))
    drop = float(_number(d, "drop_heartbeats", "network", 0.0, 0.0, 1.0))
    times: dict[str, float | None] = {}
    for key in ("disconnect_at_s", "reconnect_after_s"):
        value = d.get(key)
        if value is None:
            times[key] = None
        else:
            times[key] = float(_number(d, key, "network", 0.0, 0.0, 3600.0, positive=key == "reconnect_after_s"))
    if times["reconnect_after_s"] is not None and times["disconnect_at_s"] is None:
        raise ScenarioError("network.reconnect_after_s", "needs network.disconnect_at_s")
    return NetworkSpec(delay, drop, times["disconnect_at_s"], times["reconnect_after_s"])


def _llm(data: Any) -> tuple[LlmRule, ...]:
    if not isinstance(data, list):
        raise ScenarioError("llm", f"must be a list of rules, got {type(data).__name__}")
    rules: list[LlmRule] = []
    defaults = 0
    for i, raw in enumerate(data):
        path = f"llm[{i}]"
        d = _keys(raw, path, ("match", "reply", "default"))
        if "default" in d:
            if len(d) != 1:
                raise ScenarioError(path, "a default rule has only `default`")
            defaults += 1
            if defaults > 1:
                raise ScenarioError(path, "only one default rule is allowed")
            rules.append(LlmRule(_string(d["default"], f"{path}.default")))
            continue
        _keys(d, path, ("match", "reply"), required=("match", "reply"))
        rules.append(LlmRule(_string(d["reply"], f"{path}.reply"), _string(d["match"], f"{path}.match")))
    return tuple(rules)


def _after(data: Any, path: str) -> After:
    d = _keys(data, path, CONDITIONS)
    if len(d) != 1:
        raise ScenarioError(path, f"must have exactly one condition of {', '.join(CONDITIONS)}, got {len(d)}")
    kind, value = next(iter(d.items()))
    if kind == "reply_done":
        if value is not True:
            raise ScenarioError(f"{path}.reply_done", f"must be true, got {value!r}")
        return After(kind, 1.0)
    return After(kind, float(_number(d, kind, path, 0.0, 0.0, 1e6, integer=kind == "heard_words")))


def _turns(data: Any) -> tuple[Turn, ...]:
    if not isinstance(data, list) or not data:
        raise ScenarioError("turns", "must be a non-empty list of turns")
    turns: list[Turn] = []
    for i, raw in enumerate(data):
        path = f"turns[{i}]"
        d = _keys(raw, path, ("say", "after", "expect"))
        if not d:
            raise ScenarioError(path, "a turn needs `say` or `after`")
        say = _string(d["say"], f"{path}.say") if "say" in d else None
        after = _after(d["after"], f"{path}.after") if "after" in d else None
        expect = None
        if "expect" in d:
            expect = d["expect"]
            if expect not in EXPECTATIONS:
                raise ScenarioError(f"{path}.expect", f"must be one of {', '.join(EXPECTATIONS)}, got {expect!r}")
            if say is None:
                raise ScenarioError(f"{path}.expect", "needs `say` (only something said has a disposition)")
        turns.append(Turn(say, after, expect))
    return tuple(turns)


def parse(data: Any, source: str | None = None) -> Scenario:
    """A scenario from already-loaded YAML data."""
    try:
        d = _keys(data, "", ("name", "description", "seed", "audio", "network", "llm", "turns"),
                  required=("name", "turns"))
        name = _string(d["name"], "name")
        description = _string(d.get("description", ""), "description", allow_empty=True)
        seed = int(_number(d, "seed", "", 0, 0, 2**63 - 1, integer=True)) if "seed" in d else 0
        return Scenario(
            name=name, turns=_turns(d["turns"]), description=description, seed=seed,
            audio=_audio(d["audio"]) if d.get("audio") is not None else AudioSpec(),
            network=_network(d["network"]) if d.get("network") is not None else NetworkSpec(),
            llm=_llm(d["llm"]) if "llm" in d else (), source=source,
        )
    except ScenarioError as exc:
        if source and exc.source is None:
            raise ScenarioError(exc.field, exc.message, source) from None
        raise


def loads(text: str, source: str | None = None) -> Scenario:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ScenarioError as exc:  # a duplicate key
        raise ScenarioError(exc.field, exc.message, source) from None
    except yaml.YAMLError as exc:
        raise ScenarioError("yaml", f"not valid YAML: {exc}", source) from None
    return parse(data, source)


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError("file", f"cannot read: {exc.strerror}", str(path)) from None
    return loads(text, str(path))


def load_many(paths: list[str | Path]) -> list[Scenario]:
    """Scenario files and directories of them (*.yaml, *.yml); names must be unique."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p])
    scenarios = [load(f) for f in files]
    seen: dict[str, str | None] = {}
    for s in scenarios:
        if s.name in seen:
            raise ScenarioError("name", f"{s.name!r} is not unique (also in {seen[s.name]})", s.source)
        seen[s.name] = s.source
    return scenarios
