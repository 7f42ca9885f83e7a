"""Buttons and the status LED "orb", through gpiozero.

This module only translates: button edges become events handed to a sink, and orb states the
device process sets become LED colours and patterns. It decides nothing (what mute or a long press
*means* is the device state machine's business), so it can be tested with gpiozero's mock pins and
swapped for other hardware without touching behaviour.

Orb table (colour as (red, green, blue), 0..1, scaled by `GpioSettings.orb_brightness`):

| state        | colour                  | pattern                              | meaning                          |
|--------------|-------------------------|--------------------------------------|----------------------------------|
| idle         | off                     | -                                    | waiting for the wake word        |
| listening    | blue (0, 0, 1)          | solid                                | capturing the user's speech      |
| thinking     | cyan (0, 0.6, 1)        | pulse, 0.5 s in / 0.5 s out          | waiting for the server's answer  |
| speaking     | white (0.7, 0.7, 0.7)   | solid                                | playing the answer               |
| branch_held  | amber (1, 0.45, 0)      | pulse, 1 s in / 1 s out              | a thread is held ("go back")     |
| muted        | red (1, 0, 0)           | solid                                | microphone muted                 |
| offline      | orange (1, 0.25, 0)     | blink, 0.2 s on / 1.8 s off          | no connection to the server      |
| error        | red (1, 0, 0)           | blink, 0.25 s on / 0.25 s off        | a fault needs attention          |

Without PWM (`orb_pwm=False`) colours are rounded to on/off per channel and pulses become blinks.

Buttons (active low, internal pull-up by default):

- mute: each press flips the mute switch position and emits `MuteToggled(muted)`. The position is
  the switch's, not the device's policy; call `set_muted()` when mute changes from elsewhere so the
  next press flips from the right position.
- talk: a short press emits `TalkPressed` on release; holding it for `hold_time_s` emits
  `CancelHint` at once and no `TalkPressed` on release, so a long press never starts a turn.

Events are delivered on gpiozero's callback threads: the sink must be thread-safe (a
`queue.Queue().put_nowait` is the intended one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class OrbState(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    BRANCH_HELD = "branch_held"
    MUTED = "muted"
    OFFLINE = "offline"
    ERROR = "error"


Color = tuple[float, float, float]


@dataclass(frozen=True)
class OrbPattern:
    color: Color
    mode: Literal["off", "solid", "pulse", "blink"]
    on_s: float = 0.0  # pulse: fade-in time; blink: on time
    off_s: float = 0.0  # pulse: fade-out time; blink: off time


ORB_PATTERNS: Mapping[OrbState, OrbPattern] = {
    OrbState.IDLE: OrbPattern((0.0, 0.0, 0.0), "off"),
    OrbState.LISTENING: OrbPattern((0.0, 0.0, 1.0), "solid"),
    OrbState.THINKING: OrbPattern((0.0, 0.6, 1.0), "pulse", 0.5, 0.5),
    OrbState.SPEAKING: OrbPattern((0.7, 0.7, 0.7), "solid"),
    OrbState.BRANCH_HELD: OrbPattern((1.0, 0.45, 0.0), "pulse", 1.0, 1.0),
    OrbState.MUTED: OrbPattern((1.0, 0.0, 0.0), "solid"),
    OrbState.OFFLINE: OrbPattern((1.0, 0.25, 0.0), "blink", 0.2, 1.8),
    OrbState.ERROR: OrbPattern((1.0, 0.0, 0.0), "blink", 0.25, 0.25),
}


@dataclass(frozen=True)
class GpioSettings:
    """BCM pin numbers (None disables that part). Defaults suit a bare Pi with a common-cathode
    RGB LED on 17/27/22 and two buttons to ground on 23 (mute) and 24 (talk)."""

    orb_pins: tuple[int, int, int] | None = (17, 27, 22)  # red, green, blue
    orb_active_high: bool = True  # False for a common-anode LED
    orb_pwm: bool = True
    orb_brightness: float = 1.0
    mute_pin: int | None = 23
    talk_pin: int | None = 24
    button_pull_up: bool = True  # buttons wired to ground
    bounce_time_s: float | None = 0.02
    hold_time_s: float = 1.0  # talk held this long -> CancelHint


@dataclass(frozen=True)
class MuteToggled:
    muted: bool  # the new switch position
    t: float  # clock() when pressed


@dataclass(frozen=True)
class TalkPressed:
    t: float  # clock() at release of a short press


@dataclass(frozen=True)
class CancelHint:
    t: float  # clock() when the hold time elapsed


GpioEvent = MuteToggled | TalkPressed | CancelHint


class Gpio:
    """Owns the orb and the buttons. `pin_factory=None` uses gpiozero's default (set
    GPIOZERO_PIN_FACTORY=mock, or `Device.pin_factory = MockFactory()`, off a Pi)."""

    def __init__(
        self,
        settings: GpioSettings,
        sink: Callable[[GpioEvent], Any],
        *,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from gpiozero import RGBLED, Button

        self.settings = settings
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._muted = False
        self._talk_held = False
        self._state: OrbState | None = None
        self.orb: Any = None
        self.mute_button: Any = None
        self.talk_button: Any = None
        try:
            if settings.orb_pins is not None:
                r, g, b = settings.orb_pins
                self.orb = RGBLED(r, g, b, active_high=settings.orb_active_high, pwm=settings.orb_pwm,
                                  pin_factory=pin_factory)
            if settings.mute_pin is not None:
                self.mute_button = Button(settings.mute_pin, pull_up=settings.button_pull_up,
                                          bounce_time=settings.bounce_time_s, pin_factory=pin_factory)
                self.mute_button.when_pressed = self._on_mute
            if settings.talk_pin is not None:
                self.talk_button = Button(settings.talk_pin, pull_up=settings.button_pull_up,
                                          bounce_time=settings.bounce_time_s, hold_time=settings.hold_time_s,
                                          pin_factory=pin_factory)
                self.talk_button.when_pressed = self._on_talk_down
                self.talk_button.when_held = self._on_talk_held
                self.talk_button.when_released = self._on_talk_up
        except Exception:
            self.close()
            raise
        self.set_orb(OrbState.IDLE)

    # --- commands: device -> hardware

    @property
    def orb_state(self) -> OrbState | None:
        return self._state

    def set_orb(self, state: OrbState | str) -> None:
        """Show `state` on the orb (idempotent: re-setting the same state does not restart a pulse)."""
        state = OrbState(state)
        if state == self._state:
            return
        self._state = state
        if self.orb is None:
            return
        p = ORB_PATTERNS[state]
        color = self._scaled(p.color)
        mode = p.mode
        if mode == "pulse" and not self.settings.orb_pwm:
            mode = "blink"
        if mode == "off":
            self.orb.off()
        elif mode == "solid":
            self.orb.color = color
        elif mode == "pulse":
            self.orb.pulse(fade_in_time=p.on_s, fade_out_time=p.off_s, on_color=color)
        else:
            self.orb.blink(on_time=p.on_s, off_time=p.off_s, on_color=color)

    @property
    def muted(self) -> bool:
        return self._muted

    def set_muted(self, muted: bool) -> None:
        """Align the mute switch position with the device's (when mute changed by other means)."""
        with self._lock:
            self._muted = muted

    def close(self) -> None:
        for dev in (self.orb, self.mute_button, self.talk_button):
            if dev is not None:
                dev.close()

    def __enter__(self) -> Gpio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- hardware -> events

    def _scaled(self, color: Color) -> Color:
        k = max(0.0, min(1.0, self.settings.orb_brightness))
        if not self.settings.orb_pwm:
            return tuple(1.0 if c * k >= 0.5 else 0.0 for c in color)  # type: ignore[return-value]
        return (color[0] * k, color[1] * k, color[2] * k)

    def _on_mute(self) -> None:
        with self._lock:
            self._muted = not self._muted
            event = MuteToggled(muted=self._muted, t=self._clock())
        self._sink(event)

    def _on_talk_down(self) -> None:
        with self._lock:
            self._talk_held = False

    def _on_talk_held(self) -> None:
        with self._lock:
            self._talk_held = True
        self._sink(CancelHint(t=self._clock()))

    def _on_talk_up(self) -> None:
        with self._lock:
            held = self._talk_held
            self._talk_held = False
        if not held:
            self._sink(TalkPressed(t=self._clock()))
