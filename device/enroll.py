"""First-boot claim enrollment, and reading the device's own credential.

With a `[claim]` section naming the factory claim `bundle`, `segue-device` makes sure it has its own
credential before it connects: if `credential` (default /var/lib/segue/device.toml) does not exist
yet, it enrolls by claim (`device.claim.claim_enroll`, docs/fleet.md) and writes it there
(mode 0600); then, on this and every later start, the credential's `[mqtt]` and `[device] id`
replace the config's broker settings and id. Without `[claim] bundle` nothing happens.

The serial is, in order: `[claim] serial`; the first line of `serial_file`; the claim bundle's
`[claim] serial`; the Pi's serial (/proc/device-tree/serial-number, else `Serial` in /proc/cpuinfo).

`device.claim` (paho, cryptography) is imported only when a claim is actually needed. The device
never imports `provisioning/` (the fleet side): the two meet only on the wire (`icp.messages.claim`)
and in the bundle format (`icp.messages.bundle`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from pathlib import Path
from typing import Callable, Optional

from device.config import DeviceConfig
from icp.messages.bundle import MQTT_KEYS

log = logging.getLogger(__name__)

PI_SERIAL_FILES = ("/proc/device-tree/serial-number",)
CPUINFO = "/proc/cpuinfo"


class EnrollmentError(RuntimeError):
    """Enrollment could not complete; `retry` says whether trying again later may help."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def find_serial(cfg: DeviceConfig, cpuinfo: str = CPUINFO, serial_files=PI_SERIAL_FILES) -> str:
    c = cfg.claim
    if c.serial:
        return c.serial.strip()
    candidates = [c.serial_file] if c.serial_file else []
    for path in candidates:
        try:
            text = Path(path).read_text(errors="replace").replace("\x00", "").strip()
        except OSError as e:
            raise EnrollmentError(f"[claim] serial_file {path}: {e}", retry=False) from None
        if text:
            return text.splitlines()[0].strip()
    if c.bundle:
        try:
            doc = tomllib.loads(Path(c.bundle).read_text())
        except (OSError, tomllib.TOMLDecodeError):
            doc = {}
        serial = doc.get("claim", {}).get("serial")
        if serial:
            return str(serial).strip()
    for path in serial_files:
        try:
            text = Path(path).read_text(errors="replace").replace("\x00", "").strip()
        except OSError:
            continue
        if text:
            return text
    try:
        m = re.search(r"^Serial\s*:\s*(\S+)", Path(cpuinfo).read_text(errors="replace"), re.M)
    except OSError:
        m = None
    if m:
        return m.group(1)
    raise EnrollmentError("no serial: set [claim] serial or serial_file", retry=False)


def apply_credential(cfg: DeviceConfig, path: str | Path) -> DeviceConfig:
    """The config with the device bundle's broker settings and id (the bundle wins)."""
    doc = tomllib.loads(Path(path).read_text())
    mq = {k: v for k, v in doc.get("mqtt", {}).items() if k in MQTT_KEYS}
    if "port" in mq:
        mq["port"] = int(mq["port"])
    r = dataclasses.replace
    out = r(cfg, mqtt=r(cfg.mqtt, **mq))
    dev_id = doc.get("device", {}).get("id")
    if dev_id:
        out = r(out, device=r(out.device, id=str(dev_id)))
    return out


def ensure_credential(cfg: DeviceConfig, enroll: Optional[Callable[..., object]] = None) -> DeviceConfig:
    """Enroll by claim if needed and return the config to run with (unchanged without `[claim]`)."""
    c = cfg.claim
    if not c.bundle:
        return cfg
    cred = Path(c.credential)
    if not cred.is_file():
        serial = find_serial(cfg)
        if enroll is None:
            try:
                from device.claim import claim_enroll as enroll
            except ImportError as e:  # an image without the device extra's cryptography
                raise EnrollmentError(f"claim enrollment needs cryptography (pip install 'segue[device]'): {e}",
                                      retry=False) from None
        log.info("no credential at %s: enrolling serial %s by claim", cred, serial)
        try:
            enroll(c.bundle, serial=serial, out=cred, timeout=c.timeout_s, host=c.host)
        except TimeoutError as e:
            raise EnrollmentError(f"claim enrollment timed out: {e}", retry=True) from None
        except OSError as e:
            raise EnrollmentError(f"claim enrollment failed: {e}", retry=True) from None
        except Exception as e:  # EnrollmentRefused and friends: a person has to act
            raise EnrollmentError(f"claim enrollment failed: {type(e).__name__}: {e}", retry=False) from None
        log.info("enrolled; credential written to %s", cred)
    try:
        return apply_credential(cfg, cred)
    except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError) as e:
        raise EnrollmentError(f"credential {cred} unreadable: {e}", retry=False) from None
