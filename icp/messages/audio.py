"""Binary audio frames: a 16-byte header, then mono s16le PCM (docs/protocol.md, `audio`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from icp.errors import ProtocolError

MAGIC = b"SGA"
AUDIO_VERSION = 1
HEADER = struct.Struct("<3sBIIHH")  # magic, version, segment, offset, flags, reserved
MAX_PCM_BYTES = 65536
FLAG_LAST = 0x1


@dataclass(frozen=True, slots=True)
class AudioFrame:
    segment: int
    offset: int  # sample offset of the first sample of `pcm` within the segment
    pcm: bytes
    last: bool = False

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    def encode(self) -> bytes:
        _check_pcm(self.pcm)
        if not 1 <= self.segment < 2**32:
            raise ProtocolError("segment", f"must be 1..2^32-1, got {self.segment}")
        if not 0 <= self.offset < 2**32:
            raise ProtocolError("offset", f"must be 0..2^32-1, got {self.offset}")
        flags = FLAG_LAST if self.last else 0
        return HEADER.pack(MAGIC, AUDIO_VERSION, self.segment, self.offset, flags, 0) + self.pcm

    @classmethod
    def decode(cls, payload: bytes) -> "AudioFrame":
        if len(payload) < HEADER.size:
            raise ProtocolError("header", f"audio frame shorter than its {HEADER.size}-byte header")
        magic, version, segment, offset, flags, reserved = HEADER.unpack_from(payload)
        if magic != MAGIC:
            raise ProtocolError("magic", f"must be {MAGIC!r}, got {magic!r}")
        if version != AUDIO_VERSION:
            raise ProtocolError("version", f"unsupported audio version {version}")
        if segment == 0:
            raise ProtocolError("segment", "must be >= 1")
        if flags & ~FLAG_LAST:
            raise ProtocolError("flags", f"unknown flag bits {flags:#x}")
        if reserved:
            raise ProtocolError("reserved", "must be 0")
        pcm = bytes(payload[HEADER.size :])
        _check_pcm(pcm)
        return cls(segment, offset, pcm, bool(flags & FLAG_LAST))


def _check_pcm(pcm: bytes) -> None:
    if not pcm or len(pcm) % 2:
        raise ProtocolError("pcm", f"must be a non-empty even number of bytes, got {len(pcm)}")
    if len(pcm) > MAX_PCM_BYTES:
        raise ProtocolError("pcm", f"at most {MAX_PCM_BYTES} bytes per frame, got {len(pcm)}")


def split_pcm(segment: int, pcm: bytes, max_bytes: int = 32000) -> list[AudioFrame]:
    """Cut one segment's PCM into frames (the last one flagged)."""
    if not 2 <= max_bytes <= MAX_PCM_BYTES:
        raise ValueError(f"max_bytes must be 2..{MAX_PCM_BYTES}")
    _check_pcm(pcm[:2])
    max_bytes -= max_bytes % 2
    frames = []
    for start in range(0, len(pcm), max_bytes):
        chunk = pcm[start : start + max_bytes]
        frames.append(AudioFrame(segment, start // 2, chunk, last=start + max_bytes >= len(pcm)))
    return frames
