"""Frozen settings: where the fleet keeps its files, and how the broker is laid out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from icp.messages.bundle import DEFAULT_TOPIC_ROOT

from .ids import check_topic_root

__all__ = ["DEFAULT_TOPIC_ROOT", "BrokerSettings", "FleetPaths"]


@dataclass(frozen=True)
class FleetPaths:
    """The layout of a fleet home directory (`segue-fleet --home DIR`)."""

    home: Path

    @property
    def db(self) -> Path:
        return self.home / "fleet.db"

    @property
    def ca_dir(self) -> Path:
        return self.home / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def crl(self) -> Path:
        return self.ca_dir / "crl.pem"

    @property
    def secrets(self) -> Path:
        """Plain-text passwords and private keys, one file each, mode 0600, in a 0700 directory."""
        return self.home / "secrets"

    def password_file(self, username: str) -> Path:
        return self.secrets / f"{username}.password"

    def cert_file(self, device_id: str, generation: int) -> Path:
        return self.secrets / f"{device_id}.{generation}.cert.pem"

    def key_file(self, device_id: str, generation: int) -> Path:
        return self.secrets / f"{device_id}.{generation}.key.pem"


@dataclass(frozen=True)
class BrokerSettings:
    """How `broker-config` laid the broker out; kept in the registry so revoke/enroll can reload it."""

    out_dir: Path
    port: int
    tls_port: int | None = None
    bind: str = "0.0.0.0"
    #: The host name devices and the engine use to reach the broker (goes into bundles and the
    #: broker's TLS certificate).
    public_host: str = "localhost"
    #: Extra names for the broker certificate (DNS names or IP addresses).
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    #: `user` line of mosquitto.conf (the account Mosquitto drops to when started as root);
    #: None writes no line.
    broker_user: str | None = None
    topic_root: str = DEFAULT_TOPIC_ROOT

    def __post_init__(self) -> None:
        check_topic_root(self.topic_root)
        for p in (self.port, self.tls_port):
            if p is not None and not 0 < p < 65536:
                raise ValueError(f"bad port {p}")

    @property
    def conf(self) -> Path:
        return self.out_dir / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        return self.out_dir / "passwd"

    @property
    def acl(self) -> Path:
        return self.out_dir / "acl"

    @property
    def pid_file(self) -> Path:
        return self.out_dir / "mosquitto.pid"

    def to_json(self) -> str:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["server_names"] = list(self.server_names)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BrokerSettings":
        d = json.loads(text)
        d["out_dir"] = Path(d["out_dir"])
        d["server_names"] = tuple(d["server_names"])
        return cls(**d)
