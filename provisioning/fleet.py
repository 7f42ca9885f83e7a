"""Fleet operations: the verbs of `segue-fleet`, on a fleet home (registry, CA, secrets) and the
broker files derived from it. No argument parsing and no printing here."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from icp.messages.claim import ClaimRequest

from . import bundle as bundles
from . import ca as fleet_ca
from .broker import (
    TlsFiles, broker_pid, reachability_problem, reload_broker, render_conf, write_broker_files,
)
from .ids import (
    CLAIM_USER, ENGINE_USER, FLEET_USER, MONITOR_USER, SERVICE_USERS, check_device_id, check_serial,
    check_topic_root, default_device_id, device_username,
)
from .passwords import make_private_dir, mosquitto_hash, new_password, write_file
from .registry import Credential, Device, Registry
from .settings import DEFAULT_TOPIC_ROOT, BrokerSettings, FleetPaths

log = logging.getLogger("segue.fleet")

SERVICE_ROLES = {"engine": ENGINE_USER, "fleet": FLEET_USER, "monitor": MONITOR_USER, "claim": CLAIM_USER}


class FleetError(Exception):
    """An operation the fleet refuses; the message is for the operator."""


@dataclass(frozen=True)
class DeviceView:
    """What `list`/`show` print: state and times, never a secret."""

    device: Device
    usernames: tuple[str, ...]
    rotation_pending: bool


@dataclass(frozen=True)
class ClaimOutcome:
    ok: bool
    reason: str
    device_id: str | None = None
    username: str | None = None
    password: str | None = None  # only for the sealed reply; never log an outcome's password
    repeated: bool = False


class Fleet:
    def __init__(self, home: Path) -> None:
        self.paths = FleetPaths(Path(home))
        if not self.paths.db.exists():
            raise FleetError(f"no fleet at {home}: run `segue-fleet --home {home} init` first")
        self.reg = Registry(self.paths.db)

    # ----------------------------------------------------------------- init
    @classmethod
    def init(cls, home: Path, topic_root: str = DEFAULT_TOPIC_ROOT) -> "Fleet":
        paths = FleetPaths(Path(home))
        check_topic_root(topic_root)
        if paths.db.exists():
            raise FleetError(f"a fleet already exists at {home}")
        make_private_dir(paths.home)
        make_private_dir(paths.secrets)
        make_private_dir(paths.ca_dir)
        ca = fleet_ca.create_ca()
        write_file(paths.ca_key, ca.key_pem, mode=0o600)
        write_file(paths.ca_cert, ca.cert_pem, mode=0o644)
        reg = Registry(paths.db)
        reg.set_meta("topic_root", topic_root)
        reg.set_meta("created_at", str(time.time()))
        reg.close()
        fleet = cls(home)
        for role, user in SERVICE_ROLES.items():
            fleet._new_password_credential(user, None, role, 1)
        write_file(paths.crl, fleet_ca.build_crl(ca, []), mode=0o644)
        log.info("fleet initialised at %s (topic root %s)", home, topic_root)
        return fleet

    def close(self) -> None:
        self.reg.close()

    @property
    def topic_root(self) -> str:
        return self.reg.get_meta("topic_root") or DEFAULT_TOPIC_ROOT

    def _ca(self) -> fleet_ca.Issued:
        return fleet_ca.Issued(self.paths.ca_cert.read_bytes(), self.paths.ca_key.read_bytes(), 0)

    # ---------------------------------------------------------- credentials
    def _new_password_credential(self, username: str, device_id: str | None, role: str, gen: int) -> str:
        password = new_password()
        write_file(self.paths.password_file(username), password + "\n", mode=0o600)
        self.reg.add_credential(Credential(
            username=username, device_id=device_id, role=role, kind="password", generation=gen,
            pw_hash=mosquitto_hash(password), cert_serial=None, state="active", created_at=time.time(),
        ))
        return password

    def _new_cert_credential(self, device_id: str, gen: int) -> None:
        issued = fleet_ca.issue_client(self._ca(), device_id)
        write_file(self.paths.key_file(device_id, gen), issued.key_pem, mode=0o600)
        write_file(self.paths.cert_file(device_id, gen), issued.cert_pem, mode=0o644)
        self.reg.add_credential(Credential(
            username=device_id, device_id=device_id, role="device", kind="cert", generation=gen,
            pw_hash=None, cert_serial=str(issued.serial), state="active", created_at=time.time(),
        ))

    def _new_device_credential(self, device_id: str, auth: str) -> Credential:
        gen = max((c.generation for c in self.reg.credentials(device_id)), default=0) + 1
        if auth == "cert":
            self._new_cert_credential(device_id, gen)
        else:
            self._new_password_credential(device_username(device_id, gen), device_id, "device", gen)
        return self._current(device_id)

    def _active(self, device_id: str) -> list[Credential]:
        return [c for c in self.reg.credentials(device_id) if c.state == "active"]

    def _current(self, device_id: str) -> Credential:
        active = self._active(device_id)
        if not active:
            raise FleetError(f"device {device_id} has no active credential")
        return max(active, key=lambda c: c.generation)

    def read_password(self, username: str) -> str:
        return self.paths.password_file(username).read_text().strip()

    # --------------------------------------------------------------- enroll
    def enroll(self, device_id: str, *, cert: bool = False, source: str = "cli",
               serial: str | None = None, apply: bool = True) -> bool:
        """Enroll one device; True if it was created, False if it already was (idempotent)."""
        check_device_id(device_id)
        existing = self.reg.device(device_id)
        auth = "cert" if cert else "password"
        if existing is not None:
            if existing.state == "revoked":
                raise FleetError(f"device {device_id} is revoked; enroll it under a new id")
            if existing.auth != auth:
                raise FleetError(f"device {device_id} is enrolled with a {existing.auth} credential")
            return False
        self.reg.add_device(device_id, auth, source, serial)
        self._new_device_credential(device_id, auth)
        log.info("enrolled %s (%s credential, via %s)", device_id, auth, source)
        if apply:
            self.apply()
        return True

    def enroll_csv(self, path: Path, *, cert: bool = False) -> list[tuple[str, str]]:
        """Rows `device_id[,password|cert]`; returns (device_id, created|exists|error: ...)."""
        results: list[tuple[str, str]] = []
        for row in bundles_rows(path):
            device_id = row[0]
            auth_cert = cert if len(row) < 2 or not row[1] else row[1].lower() == "cert"
            try:
                created = self.enroll(device_id, cert=auth_cert, apply=False)
                results.append((device_id, "created" if created else "exists"))
            except (FleetError, ValueError) as e:
                results.append((device_id, f"error: {e}"))
        self.apply()
        return results

    # ------------------------------------------------------------ list/show
    def view(self, device_id: str) -> DeviceView:
        dev = self.reg.device(device_id)
        if dev is None:
            raise FleetError(f"no device {device_id}")
        active = self._active(device_id)
        return DeviceView(dev, tuple(sorted({c.username for c in active})), len(active) > 1)

    def views(self) -> list[DeviceView]:
        return [self.view(d.id) for d in self.reg.devices()]

    # ---------------------------------------------------------- revocation
    def revoke(self, device_id: str) -> dict[str, bool]:
        dev = self.reg.device(device_id)
        if dev is None:
            raise FleetError(f"no device {device_id}")
        for c in self.reg.credentials(device_id):
            if c.state != "revoked":
                self.reg.set_credential_state(c.username, c.generation, "revoked")
        self.reg.set_device_state(device_id, "revoked")
        log.info("revoked %s", device_id)
        reloaded = self.apply()
        kicked = self.kick(device_id) if reloaded else False
        return {"reloaded": reloaded, "kicked": kicked}

    def rotate(self, device_id: str) -> Credential:
        dev = self.reg.device(device_id)
        if dev is None or dev.state != "active":
            raise FleetError(f"no active device {device_id}")
        if len(self._active(device_id)) > 1:
            raise FleetError(f"{device_id} already has a rotation pending: `rotate {device_id} --confirm` first")
        cred = self._new_device_credential(device_id, dev.auth)
        log.info("rotated %s: new credential generation %d (old one still valid)", device_id, cred.generation)
        self.apply()
        return cred

    def confirm_rotation(self, device_id: str) -> int:
        """Retire every credential of the device but the newest; returns how many were retired."""
        active = self._active(device_id)
        if len(active) < 2:
            raise FleetError(f"{device_id} has no rotation pending")
        newest = max(active, key=lambda c: c.generation)
        for c in active:
            if c is not newest:
                self.reg.set_credential_state(c.username, c.generation, "retired")
        log.info("rotation of %s confirmed: %d old credential(s) retired", device_id, len(active) - 1)
        reloaded = self.apply()
        if reloaded and newest.kind == "cert":
            self.kick(device_id)  # the old certificate's session, if any (the device reconnects)
        return len(active) - 1

    # -------------------------------------------------------------- broker
    def broker_settings(self) -> BrokerSettings | None:
        text = self.reg.get_meta("broker")
        return BrokerSettings.from_json(text) if text else None

    def broker_config(self, settings: BrokerSettings) -> BrokerSettings:
        if settings.topic_root != self.topic_root:
            settings = dataclasses.replace(settings, topic_root=self.topic_root)
        out = settings.out_dir
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700)
        owner = settings.broker_user if (settings.broker_user and os.geteuid() == 0) else None
        problem = reachability_problem(out, settings.broker_user, chown=owner is not None)
        if problem is not None:  # a broker that could not start: say what to do instead
            if created:
                out.rmdir()
            raise FleetError(problem)
        tls: TlsFiles | None = None
        if settings.tls_port is not None:
            tls = TlsFiles(out / "ca.pem", out / "server.pem", out / "server.key", out / "crl.pem")
            server = fleet_ca.issue_server(self._ca(), settings.server_names)
            write_file(tls.cafile, self.paths.ca_cert.read_bytes(), mode=0o644, owner=owner)
            write_file(tls.certfile, server.cert_pem, mode=0o644, owner=owner)
            write_file(tls.keyfile, server.key_pem, mode=0o600, owner=owner)
        write_file(settings.conf, render_conf(settings, tls), mode=0o644, owner=owner)
        self.reg.set_meta("broker", settings.to_json())
        self.apply()
        return settings

    def apply(self) -> bool:
        """Rewrite the broker's password/ACL/CRL files from the registry and SIGHUP the broker.
        Returns True if a running broker was signalled."""
        s = self.broker_settings()
        crl = fleet_ca.build_crl(self._ca(), self.reg.revoked_cert_serials())
        write_file(self.paths.crl, crl, mode=0o644)
        if s is None:
            return False
        write_broker_files(s, self.reg.active_credentials(), crl_pem=crl)
        return reload_broker(s)

    def broker_running(self) -> bool:
        s = self.broker_settings()
        return s is not None and broker_pid(s) is not None

    def kick(self, device_id: str, timeout: float = 3.0) -> bool:
        """Cut a live session by taking over its client id (the device id) with the fleet credential.
        Mosquitto disconnects the older session at once (MQTT session takeover)."""
        s = self.broker_settings()
        if s is None:
            return False
        import paho.mqtt.client as mqtt

        done: dict[str, bool] = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(FLEET_USER, self.read_password(FLEET_USER))
        c.on_connect = lambda cl, u, f, rc, p=None: done.__setitem__("ok", not rc.is_failure)
        host = "127.0.0.1" if s.bind in ("0.0.0.0", "::", "") else s.bind
        try:
            c.connect(host, s.port, keepalive=10, clean_start=True)
            deadline = time.monotonic() + timeout
            while "ok" not in done and time.monotonic() < deadline:
                c.loop(0.05)
            c.disconnect()
            c.loop(0.05)
        except OSError as e:
            log.warning("could not kick %s: %s", device_id, e)
            return False
        return done.get("ok", False)

    # -------------------------------------------------------------- export
    def _endpoint(self, tls: bool, host: str | None, port: int | None) -> tuple[str, int]:
        s = self.broker_settings()
        if s is None and (host is None or port is None):
            raise FleetError("run broker-config first, or give --host and --port")
        h = host or (s.public_host if s else "")
        if port is None and s is not None:
            if tls and s.tls_port is None:
                raise FleetError("this device uses a certificate but the broker has no TLS listener (--tls-port)")
            port = s.tls_port if tls else s.port
        assert port is not None
        return h, port

    def device_bundle(self, device_id: str, out: Path, *, host: str | None = None, port: int | None = None,
                      install_dir: Path | None = None) -> bundles.Bundle:
        dev = self.reg.device(device_id)
        if dev is None or dev.state != "active":
            raise FleetError(f"no active device {device_id}")
        cred = self._current(device_id)
        h, p = self._endpoint(cred.kind == "cert", host, port)
        if cred.kind == "password":
            mq = bundles.MqttBundle(host=h, port=p, topic_root=self.topic_root, username=cred.username,
                                    password=self.read_password(cred.username), client_id=device_id)
        else:
            stem = out.name.removesuffix(".toml")
            files = {
                "ca": (out.with_name(f"{stem}.ca.pem"), self.paths.ca_cert.read_bytes(), 0o644),
                "cert": (out.with_name(f"{stem}.cert.pem"), self.paths.cert_file(device_id, cred.generation).read_bytes(), 0o644),
                "key": (out.with_name(f"{stem}.key.pem"), self.paths.key_file(device_id, cred.generation).read_bytes(), 0o600),
            }
            where: dict[str, str] = {}
            for k, (path, data, mode) in files.items():
                write_file(path, data, mode=mode)
                where[k] = str((install_dir / path.name) if install_dir else path.resolve())
            mq = bundles.MqttBundle(host=h, port=p, topic_root=self.topic_root, client_id=device_id, **where)
        b = bundles.Bundle(mq, device_id=device_id, comment=f"segue device bundle for {device_id}. Secret: mode 0600.")
        bundles.write(b, out)
        return b

    def service_bundle(self, role: str, out: Path, *, host: str | None = None, port: int | None = None) -> bundles.Bundle:
        user = SERVICE_ROLES[role]
        h, p = self._endpoint(False, host, port)
        mq = bundles.MqttBundle(host=h, port=p, topic_root=self.topic_root, username=user, password=self.read_password(user))
        b = bundles.Bundle(mq, comment=f"segue {role} credential. Secret: mode 0600.")
        bundles.write(b, out)
        return b

    # --------------------------------------------------------------- claim
    def allow(self, serial: str, device_id: str | None = None) -> bool:
        check_serial(serial)
        return self.reg.allow(serial, check_device_id(device_id) if device_id else default_device_id(serial))

    def reset_claim(self, serial: str) -> None:
        """Let an allow-listed serial enroll again (a re-flashed device): revokes its current device."""
        entry = self.reg.allow_entry(serial)
        if entry is None:
            raise FleetError(f"serial {serial} is not on the allow-list")
        dev = self.reg.device(entry.device_id)
        if dev is not None and dev.state == "active":
            self.revoke(entry.device_id)
        self.reg.reset_allow(serial)
        log.info("claim of serial %s reset", serial)

    def claim(self, req: ClaimRequest) -> ClaimOutcome:
        """Decide one parsed claim request. Refusals write nothing."""
        entry = self.reg.allow_entry(req.serial)
        if entry is None:
            return ClaimOutcome(False, "serial not on the allow-list")
        if entry.enrolled_nonce is not None:
            if entry.enrolled_nonce == req.nonce and entry.enrolled_pubkey == req.pubkey:
                dev = self.reg.device(entry.device_id)
                if dev is not None and dev.state == "active":
                    cred = self._current(entry.device_id)
                    return ClaimOutcome(True, "repeated request", entry.device_id, cred.username,
                                        self.read_password(cred.username), repeated=True)
                return ClaimOutcome(False, "device revoked")
            return ClaimOutcome(False, "already enrolled (replay or re-flash: `segue-fleet allow --reset SERIAL`)")
        if self.reg.nonce_seen(req.nonce) is not None:
            return ClaimOutcome(False, "replayed nonce")
        dev = self.reg.device(entry.device_id)
        if dev is not None and dev.state == "active":
            return ClaimOutcome(False, f"device id {entry.device_id} is already enrolled")
        if dev is None:
            self.reg.add_device(entry.device_id, "password", "claim", req.serial)
        else:
            self.reg.reactivate_device(entry.device_id, "claim", req.serial)
        cred = self._new_device_credential(entry.device_id, "password")
        self.reg.mark_claimed(req.serial, req.nonce, req.pubkey)
        self.reg.remember_nonce(req.nonce, req.serial)
        self.apply()
        log.info("enrolled %s by claim of serial %s", entry.device_id, req.serial)
        return ClaimOutcome(True, "enrolled", entry.device_id, cred.username, self.read_password(cred.username))

    def claim_bundle(self, out: Path, *, host: str | None = None, port: int | None = None) -> bundles.Bundle:
        return self.service_bundle("claim", out, host=host, port=port)

    def is_service_user(self, username: str) -> bool:
        return username in SERVICE_USERS


def bundles_rows(path: Path) -> list[list[str]]:
    from .registry import iter_rows

    return list(iter_rows(path))
