"""Replay and reordering protection for one peer: sessions and strictly increasing sequence numbers.

QoS 1 redelivers and reconnects reorder; a receiver must apply each message at most once and never
let an older message overwrite a newer one. This tracker is the whole rule (docs/protocol.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str = ""
    new_session: bool = False
    adopted: bool = False  # first message seen from a peer we had no record of (we restarted)


@dataclass
class SequenceTracker:
    session: str | None = None
    last_seq: int = -1
    retired: deque[str] = field(default_factory=lambda: deque(maxlen=32))

    def check(self, session: str, seq: int, starts_session: bool = False) -> Verdict:
        """Accept (and record) or reject one message. `starts_session`: it is a hello."""
        if self.session is None and not starts_session:
            # We restarted and lost our record: adopt the peer's session rather than ignore it forever.
            self.session, self.last_seq = session, seq
            return Verdict(True, adopted=True)
        if session != self.session:
            if not starts_session:
                return Verdict(False, f"unknown session {session!r} (expected a hello first)")
            if session in self.retired:
                return Verdict(False, f"replay from retired session {session!r}")
            if self.session is not None:
                self.retired.append(self.session)
            self.session, self.last_seq = session, seq
            return Verdict(True, new_session=True)
        if seq <= self.last_seq:
            return Verdict(False, f"replayed or out-of-order seq {seq} (last accepted {self.last_seq})")
        self.last_seq = seq
        return Verdict(True)
