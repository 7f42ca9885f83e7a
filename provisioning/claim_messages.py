"""The fleet side of the claim messages: the wire format is `icp.messages.claim` (shared with the
device, device/claim.py); here the enrollment service seals a device password to the device's
one-time X25519 key and builds its replies."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from icp.messages.claim import (
    AEAD_NONCE, KDF_INFO, ClaimError, ClaimRequest, aad, encode_ok_reply, encode_refused_reply, parse_request,
)

__all__ = ["ClaimError", "ClaimRequest", "ok_reply", "parse_request", "refused_reply", "seal"]


def seal(secret: str, device_pubkey_b64: str, serial: str, nonce: str) -> dict[str, str]:
    """`secret` encrypted to the device's one-time public key (see icp.messages.claim)."""
    eph = X25519PrivateKey.generate()
    peer = X25519PublicKey.from_public_bytes(base64.b64decode(device_pubkey_b64))
    bound = aad(serial, nonce)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KDF_INFO + bound).derive(eph.exchange(peer))
    ct = ChaCha20Poly1305(key).encrypt(AEAD_NONCE, secret.encode(), bound)
    epk = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"epk": base64.b64encode(epk).decode(), "ct": base64.b64encode(ct).decode()}


def ok_reply(req: ClaimRequest, *, device_id: str, username: str, password: str, host: str,
             port: int, topic_root: str) -> bytes:
    return encode_ok_reply(req, device_id=device_id, username=username, host=host, port=port,
                           topic_root=topic_root, sealed=seal(password, req.pubkey, req.serial, req.nonce))


def refused_reply(req: ClaimRequest, error: str = "refused") -> bytes:
    return encode_refused_reply(req, error)
