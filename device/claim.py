"""Device side of claim-based enrollment: `claim_enroll(...)` turns a factory claim bundle and the
device's serial into its own credential, stored as a device bundle (mode 0600).

    from device.claim import claim_enroll
    bundle = claim_enroll("/etc/segue/claim.toml", serial="SN0042", out="/etc/segue/device.toml")

The MQTT client id is the serial (the broker lets a claim client read only `<root>/claim/<client
id>/reply`). The password comes back sealed to a one-time X25519 key made here, so other holders of
the shared claim credential cannot read it. The messages and the sealing constants are
`icp.messages.claim`; the fleet side (the enrollment service) is provisioning/, which the device
never imports: the two meet only on the wire.
"""

from __future__ import annotations

import base64
import os
import secrets
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from icp.messages import Topics
from icp.messages import bundle as bundles
from icp.messages import claim as cm


class EnrollmentRefused(RuntimeError):
    """The fleet refused the claim (not allow-listed, already enrolled, ...)."""


def check_serial(serial: str) -> str:
    if not cm.SERIAL_PATTERN.fullmatch(serial):
        raise ValueError(f"bad serial {serial!r}: must match {cm.SERIAL_PATTERN.pattern}")
    return serial


def new_nonce() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()


def build_request(serial: str, nonce: str, key: X25519PrivateKey) -> bytes:
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return cm.encode_request(serial, nonce, pub)


def open_sealed(sealed: dict[str, Any], key: X25519PrivateKey, serial: str, nonce: str) -> str:
    """The password sealed to `key` for this serial and nonce; ClaimError when it is not for us."""
    try:
        epk = X25519PublicKey.from_public_bytes(base64.b64decode(sealed["epk"]))
        ct = base64.b64decode(sealed["ct"])
        bound = cm.aad(serial, nonce)
        k = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=cm.KDF_INFO + bound).derive(key.exchange(epk))
        return ChaCha20Poly1305(k).decrypt(cm.AEAD_NONCE, ct, bound).decode()
    except Exception as e:  # noqa: BLE001 - any failure is one answer: not for us
        raise cm.ClaimError("sealed password does not open with this key") from e


def write_bundle(bundle: bundles.Bundle, path: Path) -> Path:
    """Write atomically (temp file in the same directory, then rename), mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(bundles.render(bundle))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _client(mq: bundles.MqttBundle, client_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if mq.username is not None:
        c.username_pw_set(mq.username, mq.password)
    if mq.ca or mq.cert:
        c.tls_set(ca_certs=mq.ca, certfile=mq.cert, keyfile=mq.key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def claim_enroll(claim: Path | str | bundles.Bundle, serial: str, out: Path | str, *,
                 timeout: float = 20.0, nonce: str | None = None, verify: bool = True,
                 host: str | None = None) -> bundles.Bundle:
    """Enroll this device by claim and write its device bundle to `out`; returns the bundle.

    `claim` is the factory claim bundle (path or loaded). Raises EnrollmentRefused when the fleet
    says no, TimeoutError when no reply comes in `timeout` seconds. With `verify`, connects once
    with the new credential (retrying briefly while the broker reloads) before returning.
    `host` overrides the broker host the reply names (e.g. when the fleet's public name differs)."""
    check_serial(serial)
    cb = claim if isinstance(claim, bundles.Bundle) else bundles.parse(Path(claim).read_text())
    mq = cb.mqtt
    key = X25519PrivateKey.generate()
    nonce = nonce or new_nonce()
    topics = Topics(mq.topic_root)
    got: dict[str, cm.ClaimReply | Exception] = {}
    subscribed = threading.Event()
    arrived = threading.Event()

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object = None) -> None:
        if not rc.is_failure:
            c.subscribe(topics.claim_reply(serial), qos=1)

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            reply = cm.parse_reply(msg.payload, serial, nonce)
        except cm.ClaimError as e:
            got["reply"] = e
            arrived.set()
            return
        if reply is not None:
            got["reply"] = reply
            arrived.set()

    c = _client(mq, serial)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(mq.host, mq.port, keepalive=30)
    c.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise TimeoutError("claim: could not connect and subscribe with the claim credential")
        c.publish(topics.claim_request(serial), build_request(serial, nonce, key), qos=1).wait_for_publish(timeout)
        if not arrived.wait(timeout):
            raise TimeoutError("claim: no reply from the fleet")
    finally:
        c.disconnect()
        c.loop_stop()
    reply = got["reply"]
    if isinstance(reply, Exception):
        raise EnrollmentRefused(str(reply))
    if not reply.ok or reply.sealed is None:
        raise EnrollmentRefused(reply.error or "refused")
    password = open_sealed(reply.sealed, key, serial, nonce)
    new = bundles.MqttBundle(host=host or reply.host, port=reply.port, topic_root=reply.topic_root,
                             username=reply.username, password=password, ca=mq.ca, client_id=reply.device_id)
    result = bundles.Bundle(new, device_id=reply.device_id,
                            comment=f"segue device bundle for {reply.device_id} (by claim of {serial}). Secret.")
    if verify:
        _verify(new, reply.device_id, timeout)
    write_bundle(result, Path(out))
    return result


def _verify(mq: bundles.MqttBundle, client_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        ok = threading.Event()
        result: dict[str, bool] = {}

        def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object = None) -> None:
            result["ok"] = not rc.is_failure
            ok.set()

        c = _client(mq, client_id)
        c.on_connect = on_connect
        try:
            c.connect(mq.host, mq.port, keepalive=10)
            c.loop_start()
            ok.wait(2)
            c.disconnect()
            c.loop_stop()
        except OSError as e:
            last = e
        if result.get("ok"):
            return
        last = last or "refused"
        time.sleep(0.2)
    raise TimeoutError(f"claim: the new credential does not connect ({last})")
