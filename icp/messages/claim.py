"""The claim (enrollment) wire messages, shared by the device (device/claim.py) and the enrollment
service (provisioning/): their JSON, their rules, and the constants of the password sealing. Pure:
the X25519 / HKDF / ChaCha20-Poly1305 operations themselves need `cryptography` and live on each
side, built from the constants here so the two cannot disagree.

Request, device -> `<root>/claim/<serial>/request`, QoS 1, never retained, at most 4 KiB of JSON:

    {"v": 1, "serial": "<serial>", "nonce": "<16-64 of A-Za-z0-9_->", "pubkey": "<base64 X25519 public key>"}

Reply, fleet -> `<root>/claim/<serial>/reply`, QoS 1, never retained:

    {"v": 1, "serial": ..., "nonce": ..., "ok": true, "device_id": ..., "username": ...,
     "host": ..., "port": ..., "topic_root": ...,
     "sealed": {"epk": "<base64>", "ct": "<base64>"}}          # the password, sealed
    {"v": 1, "serial": ..., "nonce": ..., "ok": false, "error": "refused"}

`sealed` is ChaCha20-Poly1305 (nonce `AEAD_NONCE`) under a key derived with HKDF-SHA256 (no salt,
info `KDF_INFO + aad`) from X25519(fleet one-time key, device one-time key); the associated data
`aad(serial, nonce)` binds serial and nonce. Anyone else holding the shared claim credential and the
serial as client id sees only ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

VERSION = 1
#: Factory serial numbers: one MQTT client id and one topic level under `<root>/claim/`.
SERIAL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Claim request nonces.
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: Largest claim request the enrollment service reads (bytes); larger ones are refused unparsed.
MAX_REQUEST_BYTES = 4096
#: HKDF info prefix of the sealing key.
KDF_INFO = b"segue-claim-v1"
#: Every sealing key is used once (fresh ephemeral key per seal), so the AEAD nonce is constant.
AEAD_NONCE = bytes(12)
PUBLIC_KEY_BYTES = 32


class ClaimError(ValueError):
    """A claim request or reply that breaks the rules; the message says which."""


def aad(serial: str, nonce: str) -> bytes:
    """The associated data (and HKDF info suffix) that binds a sealed password to one request."""
    return f"{serial}\n{nonce}".encode()


@dataclass(frozen=True)
class ClaimRequest:
    serial: str
    nonce: str
    pubkey: str  # base64 of 32 bytes


@dataclass(frozen=True)
class ClaimReply:
    """A reply addressed to our serial and nonce. `sealed` only when `ok`."""

    ok: bool
    error: str = ""
    device_id: str = ""
    username: str = ""
    host: str = ""
    port: int = 0
    topic_root: str = ""
    sealed: dict[str, str] | None = None


def _b64_key(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > 64:
        raise ClaimError("bad pubkey")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClaimError("bad pubkey") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ClaimError("bad pubkey")
    return raw


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ClaimError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise ClaimError(f"{what} is not a JSON object")
    return data


def parse_request(topic_serial: str, payload: bytes) -> ClaimRequest:
    if len(payload) > MAX_REQUEST_BYTES:
        raise ClaimError(f"oversized request ({len(payload)} bytes > {MAX_REQUEST_BYTES})")
    data = _object(payload, "request")
    if set(data) != {"v", "serial", "nonce", "pubkey"}:
        raise ClaimError(f"request fields must be v, serial, nonce, pubkey; got {sorted(map(str, data))[:8]}")
    if data["v"] != VERSION or isinstance(data["v"], bool):
        raise ClaimError("unsupported version")
    serial, nonce, pubkey = data["serial"], data["nonce"], data["pubkey"]
    if not isinstance(serial, str) or not SERIAL_PATTERN.fullmatch(serial):
        raise ClaimError("bad serial")
    if serial != topic_serial:
        raise ClaimError("serial does not match the topic")
    if not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce):
        raise ClaimError("bad nonce")
    _b64_key(pubkey)
    return ClaimRequest(serial, nonce, pubkey)


def encode_request(serial: str, nonce: str, pubkey: bytes) -> bytes:
    return json.dumps(
        {"v": VERSION, "serial": serial, "nonce": nonce, "pubkey": base64.b64encode(pubkey).decode()}
    ).encode()


def encode_ok_reply(req: ClaimRequest, *, device_id: str, username: str, host: str, port: int,
                    topic_root: str, sealed: dict[str, str]) -> bytes:
    return json.dumps({
        "v": VERSION, "serial": req.serial, "nonce": req.nonce, "ok": True,
        "device_id": device_id, "username": username, "host": host, "port": port,
        "topic_root": topic_root, "sealed": sealed,
    }).encode()


def encode_refused_reply(req: ClaimRequest, error: str = "refused") -> bytes:
    return json.dumps({"v": VERSION, "serial": req.serial, "nonce": req.nonce, "ok": False, "error": error}).encode()


def parse_reply(payload: bytes, serial: str, nonce: str) -> ClaimReply | None:
    """The reply to our request, or None when the message is not for us (another nonce, not JSON).
    Raises ClaimError when a reply for us is malformed."""
    try:
        data = _object(payload, "reply")
    except ClaimError:
        return None
    if data.get("nonce") != nonce or data.get("serial") != serial:
        return None
    if data.get("ok") is not True:
        return ClaimReply(ok=False, error=str(data.get("error", "refused"))[:200])
    sealed = data.get("sealed")
    port = data.get("port")
    if not (isinstance(sealed, dict) and all(isinstance(sealed.get(k), str) for k in ("epk", "ct"))):
        raise ClaimError("reply without a sealed credential")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ClaimError("reply with a bad port")
    fields = {k: data.get(k) for k in ("device_id", "username", "host", "topic_root")}
    for k, v in fields.items():
        if not isinstance(v, str) or not v:
            raise ClaimError(f"reply without {k}")
    return ClaimReply(ok=True, port=port, sealed={"epk": sealed["epk"], "ct": sealed["ct"]}, **fields)
