"""Device side of claim-based enrollment: `claim_enroll(...)` turns a factory claim bundle and the
device's serial into its own credential, stored as a device bundle (mode 0600).

    from provisioning.claim import claim_enroll
    bundle = claim_enroll("/etc/segue/claim.toml", serial="SN0042", out="/etc/segue/device.toml")

The MQTT client id is the serial (the broker lets a claim client read only `<root>/claim/<client
id>/reply`). The password comes back sealed to a one-time X25519 key made here, so other holders of
the shared claim credential cannot read it.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import bundle as bundles
from . import claim_messages as cm
from .ids import check_serial


class EnrollmentRefused(RuntimeError):
    """The fleet refused the claim (not allow-listed, already enrolled, ...)."""


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
    cb = claim if isinstance(claim, bundles.Bundle) else bundles.load(Path(claim))
    mq = cb.mqtt
    key = X25519PrivateKey.generate()
    nonce = nonce or cm.new_nonce()
    root = mq.topic_root
    reply_topic = f"{root}/claim/{serial}/reply"
    got: dict[str, dict[str, object]] = {}
    subscribed = threading.Event()
    arrived = threading.Event()

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object = None) -> None:
        if not rc.is_failure:
            c.subscribe(reply_topic, qos=1)

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("nonce") == nonce and data.get("serial") == serial:
            got["reply"] = data
            arrived.set()

    c = _client(mq, serial)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(mq.host, mq.port, keepalive=30)
    c.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise TimeoutError("claim: could not connect and subscribe with the claim credential")
        c.publish(f"{root}/claim/{serial}/request", cm.build_request(serial, nonce, key), qos=1).wait_for_publish(timeout)
        if not arrived.wait(timeout):
            raise TimeoutError("claim: no reply from the fleet")
    finally:
        c.disconnect()
        c.loop_stop()
    reply = got["reply"]
    if reply.get("ok") is not True:
        raise EnrollmentRefused(str(reply.get("error", "refused")))
    sealed = reply.get("sealed")
    if not isinstance(sealed, dict):
        raise EnrollmentRefused("reply without a sealed credential")
    password = cm.open_sealed(sealed, key, serial, nonce)
    device_id = str(reply["device_id"])
    new = bundles.MqttBundle(host=host or str(reply["host"]), port=int(str(reply["port"])),
                             topic_root=str(reply["topic_root"]), username=str(reply["username"]),
                             password=password, ca=mq.ca, client_id=device_id)
    result = bundles.Bundle(new, device_id=device_id, comment=f"segue device bundle for {device_id} (by claim of {serial}). Secret.")
    if verify:
        _verify(new, device_id, timeout)
    bundles.write(result, Path(out))
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
