"""Dashboard commands: the plain-text payloads of `<root>/<id>/down/mute` and `down/restart`.

Home Assistant's MQTT switch and button publish plain payloads, not the JSON envelopes of the
engine, so these two topic levels carry exactly these strings and nothing else. The device accepts
them (device/dashboard.py) and the fleet advertises them to Home Assistant (provisioning/discovery.py);
both read them from here.
"""

from __future__ import annotations

MUTE = "mute"
RESTART = "restart"

MUTE_ON = "ON"
MUTE_OFF = "OFF"
RESTART_PRESS = "PRESS"

#: topic level -> the payloads accepted on it
PAYLOADS: dict[str, tuple[str, ...]] = {MUTE: (MUTE_ON, MUTE_OFF), RESTART: (RESTART_PRESS,)}
