"""Telemetry: what the device counts and measures for dashboards (`up/telemetry`, docs/fleet.md).

What is counted, exactly:

- `wake_count`: wakes the device acted on and reported (`wake` events): the wake word, the talk
  button, and a wake word while speaking when `[wakeword] while_speaking` is on. Wakes ignored while
  muted or mid-reply are not counted.
- `interruptions`: the dispositions the *engine* applied, as the device learns them from the
  `control` that carries them out: `resume` with reason `ABSORB`, `flush` with reason `BRANCH`,
  `MODIFY` or `CANCEL` (the engine names the disposition; flushes for RESEND, SYNC or RESTART are
  not interruptions). Only the first such control after an `interrupt` this device sent counts. Interruptions whose disposition never came back (the engine was offline, or the device was
  restarted) are not counted; `interrupts_sent` (not on the wire) counts every `interrupt` sent.
- `cursor_lag_ms`: the largest delay, over the interval, between a playback report falling due on
  the stream clock (a segment's last sample reached the DAC, playback ran dry) and the device loop
  publishing the cursor report for it: how stale the device's own cursor reports are (loop
  latency; heartbeats are computed at the moment they are sent and do not count). Null when no
  such report fell due in the interval.
- `rtt_ms`: mean MQTT publish -> PUBACK round trip of the QoS 1 messages sent in the interval (the
  last one measured if none were); null before the first.
- `uptime_s`: seconds since the process started (monotonic wall clock).
- `false_pauses`, `false_pause_ms`: optimistic pauses (playback paused on a first speech-like frame)
  that no speech onset confirmed, and their summed length, since the process started: the price of
  stopping on the first frame (docs/turns.md).
- `cpu_temp_c`: `/sys/class/thermal/thermal_zone0/temp` (millidegrees) where readable, else null.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from icp.messages import Telemetry

DISPOSITIONS = ("BRANCH", "MODIFY", "CANCEL", "ABSORB")


def read_cpu_temp(path: str = "/sys/class/thermal/thermal_zone0/temp") -> Optional[float]:
    """CPU temperature in °C, or None where the file is missing, unreadable or out of range."""
    try:
        with open(path) as f:
            raw = f.read().strip()
        value = float(raw)
    except (OSError, ValueError):
        return None
    celsius = value / 1000.0 if abs(value) > 200 else value  # millidegrees (the usual) or degrees
    return round(celsius, 1) if -50.0 <= celsius <= 150.0 else None


class TelemetryCounters:
    def __init__(self, thermal_path: str = "/sys/class/thermal/thermal_zone0/temp",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.thermal_path = thermal_path
        self._clock = clock
        self.started = clock()
        self.wake_count = 0
        self.interruptions = {d: 0 for d in DISPOSITIONS}
        self.interrupts_sent = 0
        self._lag_ms: Optional[float] = None
        self.sent = 0

    def event(self, event_type: str) -> None:
        """Count a dashboard event (`wake`, `interrupt_branch`, ...)."""
        if event_type == "wake":
            self.wake_count += 1
        elif event_type.startswith("interrupt_"):
            d = event_type[len("interrupt_"):].upper()
            if d in self.interruptions:
                self.interruptions[d] += 1

    def report_lag(self, lag_s: float) -> None:
        lag = max(0.0, lag_s * 1000.0)
        self._lag_ms = lag if self._lag_ms is None else max(self._lag_ms, lag)

    def snapshot(self, rtt_ms: Optional[float], false_pauses: int = 0, false_pause_s: float = 0.0) -> Telemetry:
        """The telemetry message for this interval (resets the per-interval cursor lag)."""
        lag, self._lag_ms = self._lag_ms, None
        self.sent += 1
        return Telemetry(
            uptime_s=max(0.0, self._clock() - self.started),
            cpu_temp_c=read_cpu_temp(self.thermal_path),
            wake_count=self.wake_count,
            interruptions=dict(self.interruptions),
            cursor_lag_ms=lag,
            rtt_ms=None if rtt_ms is None else max(0.0, rtt_ms),
            false_pauses=max(0, false_pauses),
            false_pause_ms=max(0.0, false_pause_s * 1000.0),
        )
