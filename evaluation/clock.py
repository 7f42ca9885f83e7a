"""One timeline for the whole simulated world: the virtual card's sample clock, paced by the wall.

The device steps the virtual card sample-accurately; the server's threads (LLM stream, TTS, MQTT)
run in real time. To put both on one timeline the card is *paced*: it may run `speed` times faster
than the wall clock but never further ahead, and the engine's clock is the card's own time. Engine
deadlines (auto-resume, timeouts), device playback and the ear tap then agree exactly; the price is
that real compute (LLM, TTS, broker hops) counts `speed` times in simulated time, so latencies such
as `first_audio_ms` are honest only at speed 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class PacedClock:
    """Maps wall time to the simulated time the card may have reached."""

    speed: float = 8.0
    wall: Callable[[], float] = time.monotonic
    _wall0: float = field(default=0.0, init=False)
    _sim0: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        self.restart(0.0)

    def restart(self, sim_now: float) -> None:
        """(Re)anchor: simulated time `sim_now` is now (after a stall, e.g. waiting for a model)."""
        self._wall0, self._sim0 = self.wall(), sim_now

    def target(self) -> float:
        """The simulated time the card may run to now."""
        return self._sim0 + (self.wall() - self._wall0) * self.speed

    def sim_at(self, wall_time: float) -> float:
        """The simulated time that corresponds to a wall-clock instant (e.g. an HTTP request's)."""
        return self._sim0 + (wall_time - self._wall0) * self.speed

    def wall_until(self, sim_time: float) -> float:
        """Wall seconds from now until the card may reach `sim_time` (<= 0: already)."""
        return (sim_time - self._sim0) / self.speed + self._wall0 - self.wall()
