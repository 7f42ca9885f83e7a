"""The claim (enrollment) wire messages, pure: validation of requests, building of replies, and the
sealing of the device password to the device's one-time X25519 key.

Request, device -> `<root>/claim/<serial>/request`, QoS 1, never retained, at most 4 KiB of JSON:

    {"v": 1, "serial": "<serial>", "nonce": "<16-64 of A-Za-z0-9_->", "pubkey": "<base64 X25519 public key>"}

Reply, fleet -> `<root>/claim/<serial>/reply`, QoS 1, never retained:

    {"v": 1, "serial": ..., "nonce": ..., "ok": true, "device_id": ..., "username": ...,
     "host": ..., "port": ..., "topic_root": ...,
     "sealed": {"epk": "<base64>", "ct": "<base64>"}}          # the password, sealed
    {"v": 1, "serial": ..., "nonce": ..., "ok": false, "error": "refused"}

`sealed` is ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from X25519(fleet one-time key,
device one-time key); the associated data binds serial and nonce. Anyone else holding the shared claim
credential and the serial as client id sees only ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .ids import NONCE_RE, SERIAL_RE
from .settings import MAX_CLAIM_REQUEST

VERSION = 1
_INFO = b"segue-claim-v1"
_ZERO_NONCE = bytes(12)  # every key is used once (fresh ephemeral key per seal)


class ClaimError(ValueError):
    """A claim request or reply that breaks the rules; the message says which."""


@dataclass(frozen=True)
class ClaimRequest:
    serial: str
    nonce: str
    pubkey: str  # base64 of 32 bytes


def parse_request(topic_serial: str, payload: bytes) -> ClaimRequest:
    if len(payload) > MAX_CLAIM_REQUEST:
        raise ClaimError(f"oversized request ({len(payload)} bytes > {MAX_CLAIM_REQUEST})")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ClaimError("request is not JSON") from None
    if not isinstance(data, dict):
        raise ClaimError("request is not a JSON object")
    if set(data) != {"v", "serial", "nonce", "pubkey"}:
        raise ClaimError(f"request fields must be v, serial, nonce, pubkey; got {sorted(map(str, data))[:8]}")
    if data["v"] != VERSION or isinstance(data["v"], bool):
        raise ClaimError("unsupported version")
    serial, nonce, pubkey = data["serial"], data["nonce"], data["pubkey"]
    if not isinstance(serial, str) or not SERIAL_RE.fullmatch(serial):
        raise ClaimError("bad serial")
    if serial != topic_serial:
        raise ClaimError("serial does not match the topic")
    if not isinstance(nonce, str) or not NONCE_RE.fullmatch(nonce):
        raise ClaimError("bad nonce")
    if not isinstance(pubkey, str) or len(pubkey) > 64:
        raise ClaimError("bad pubkey")
    try:
        raw = base64.b64decode(pubkey, validate=True)
    except (binascii.Error, ValueError):
        raise ClaimError("bad pubkey") from None
    if len(raw) != 32:
        raise ClaimError("bad pubkey")
    return ClaimRequest(serial, nonce, pubkey)


def build_request(serial: str, nonce: str, key: X25519PrivateKey) -> bytes:
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return json.dumps(
        {"v": VERSION, "serial": serial, "nonce": nonce, "pubkey": base64.b64encode(pub).decode()}
    ).encode()


def _key(shared: bytes, aad: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + aad).derive(shared)


def _aad(serial: str, nonce: str) -> bytes:
    return f"{serial}\n{nonce}".encode()


def seal(secret: str, device_pubkey_b64: str, serial: str, nonce: str) -> dict[str, str]:
    eph = X25519PrivateKey.generate()
    peer = X25519PublicKey.from_public_bytes(base64.b64decode(device_pubkey_b64))
    aad = _aad(serial, nonce)
    ct = ChaCha20Poly1305(_key(eph.exchange(peer), aad)).encrypt(_ZERO_NONCE, secret.encode(), aad)
    epk = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"epk": base64.b64encode(epk).decode(), "ct": base64.b64encode(ct).decode()}


def open_sealed(sealed: dict[str, Any], key: X25519PrivateKey, serial: str, nonce: str) -> str:
    try:
        epk = X25519PublicKey.from_public_bytes(base64.b64decode(sealed["epk"]))
        ct = base64.b64decode(sealed["ct"])
        aad = _aad(serial, nonce)
        return ChaCha20Poly1305(_key(key.exchange(epk), aad)).decrypt(_ZERO_NONCE, ct, aad).decode()
    except Exception as e:  # noqa: BLE001 - any failure is one answer: not for us
        raise ClaimError("sealed password does not open with this key") from e


def new_nonce() -> str:
    return base64.urlsafe_b64encode(os.urandom(18)).decode()


def ok_reply(req: ClaimRequest, *, device_id: str, username: str, password: str, host: str,
             port: int, topic_root: str) -> bytes:
    return json.dumps({
        "v": VERSION, "serial": req.serial, "nonce": req.nonce, "ok": True,
        "device_id": device_id, "username": username, "host": host, "port": port,
        "topic_root": topic_root, "sealed": seal(password, req.pubkey, req.serial, req.nonce),
    }).encode()


def refused_reply(req: ClaimRequest, error: str = "refused") -> bytes:
    return json.dumps({"v": VERSION, "serial": req.serial, "nonce": req.nonce, "ok": False, "error": error}).encode()
