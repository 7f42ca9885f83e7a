"""Config bundles on disk: the format is `icp.messages.bundle` (shared with the device, which writes
its own bundle after a claim); here the fleet writes them with mode 0600 and reads them back."""

from __future__ import annotations

from pathlib import Path

from icp.messages.bundle import MQTT_KEYS, Bundle, MqttBundle, parse, render

from .passwords import write_file

__all__ = ["MQTT_KEYS", "Bundle", "MqttBundle", "load", "render", "write"]


def write(bundle: Bundle, path: Path) -> Path:
    """Write a bundle, mode 0600 (it may hold a password)."""
    return write_file(path, render(bundle), mode=0o600)


def load(path: Path) -> Bundle:
    return parse(Path(path).read_text())
