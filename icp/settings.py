"""Settings both peers share: the broker connection, the broker-URL parser, strict value rules.

`segue-server` and `segue-device` load their TOML files with cattrs (`server/config.py`,
`device/config.py`); what they have in common lives here, in the core, because they may not import
each other. Pure: no I/O (the files are read by the callers), standard library only.

- `MqttSettings`: one type for the broker connection of the engine and of the device. TLS is on
  for `tls = true`, for an `mqtts://` broker URL, and whenever a CA file or a client certificate is
  given.
- `apply_broker_url()`: `mqtt://[user[:password]@]host[:port]` or `mqtts://...` onto settings;
  credentials in the URL are kept (the environment or the file is the better place for them).
- `strict_value()`: the rule cattrs applies to scalars: a TOML `"3"` is not a number and `1` is not
  `true`; an int is accepted where a float is expected. cattrs' default hooks would coerce both.
"""

from __future__ import annotations

import re
from enum import Enum
from dataclasses import dataclass, field, replace
from typing import Any, Optional

# scheme://[user[:password]@]host[:port][/]; host may be [IPv6]. Parsed here rather than with
# urllib.parse because the core imports nothing that can do I/O (tests/unit/test_import_rules.py).
_BROKER_URL = re.compile(r"^(?P<scheme>[a-z]+)://(?:(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@)?"
                         r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:/@\[\]]+)(?::(?P<port>[^/]*))?/?$")
_PCT = re.compile(r"%([0-9a-fA-F]{2})")


def _unquote(text: str) -> str:
    return _PCT.sub(lambda m: chr(int(m.group(1), 16)), text)


class SettingsError(ValueError):
    """A setting is wrong; the message names it and says what to do."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False  # also on with `ca`, `cert` or an mqtts:// URL
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)  # never in a log line
    ca: Optional[str] = None  # CA file that signed the broker's certificate
    cert: Optional[str] = None  # client certificate (TLS client authentication)
    key: Optional[str] = field(default=None, repr=False)
    client_id: Optional[str] = None  # default: generated (engine), "segue-<device id>" (device)
    topic_root: str = "segue"
    group: str = "segue-engine"  # engine only: workers in one shared-subscription group split the fleet
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    @property
    def use_tls(self) -> bool:
        return self.tls or bool(self.ca or self.cert)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"[mqtt] port must be 1..65535, got {self.port}")
        if self.keepalive_s <= 0:
            raise SettingsError(f"[mqtt] keepalive_s must be positive, got {self.keepalive_s}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise SettingsError("[mqtt] reconnect_min_s must be positive and at most reconnect_max_s")


def apply_broker_url(mqtt: MqttSettings, url: str) -> MqttSettings:
    """`mqtt://host:port` or `mqtts://host:port` (user:password@ allowed) onto `mqtt`."""
    m = _BROKER_URL.match(url.strip())
    if m is None or m.group("scheme") not in ("mqtt", "mqtts"):
        raise SettingsError(f"broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
    port_text = m.group("port")
    if port_text is not None and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise SettingsError(f"broker URL {url!r}: the port must be a number in 1..65535")
    tls = m.group("scheme") == "mqtts"
    user, password = m.group("user"), m.group("password")
    return replace(
        mqtt,
        host=m.group("host").strip("[]"),
        port=int(port_text) if port_text else (8883 if tls else 1883),
        tls=tls or mqtt.tls,
        username=_unquote(user) if user else mqtt.username,
        password=_unquote(password) if password else mqtt.password,
    )


STRICT_SCALARS: tuple[type, ...] = (bool, int, float, str)


def strict_value(value: Any, kind: type) -> Any:
    """`value` as `kind` (bool, int, float or str) without coercion; TypeError says what was wrong.
    A string enum (cattrs hands `StrEnum` types to the `str` rule) is structured by its value."""
    if isinstance(kind, type) and issubclass(kind, Enum):
        if not isinstance(value, str):
            raise TypeError(f"must be one of {', '.join(str(m.value) for m in kind)}, got {value!r}")
        return kind(value)  # ValueError for a value that is not a member
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"must be a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"must be a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"must be a string, got {value!r}")
    raise TypeError(f"no strict rule for {kind.__name__}")
