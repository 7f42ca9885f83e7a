"""Home Assistant MQTT device discovery payloads for segue devices. Pure: no I/O.

One retained message per device on `homeassistant/device/<id>/config` (HA 2024.11+ device-based
discovery). Availability follows the device's retained `<root>/<id>/status` (`online`/`offline`,
the device's Last Will). Components:

- sensors from the retained `<root>/<id>/up/state` (`state`, `held_threads`) and from
  `<root>/<id>/up/telemetry` (`uptime_s`, `cpu_temp_c`, `wake_count`, `interruptions.<KIND>`,
  `cursor_lag_ms`, `rtt_ms`);
- an event entity on `<root>/<id>/up/event`, JSON `{"event_type": "wake" | "interrupt_branch" |
  "interrupt_modify" | "interrupt_cancel" | "interrupt_absorb" | "audio_lost" | "audio_restored"}` (the
  wire's `EventType`; not retained, QoS 0 or 1);
- a mute switch: command `<root>/<id>/down/mute` payload `ON`/`OFF`, state from up/state `muted`;
- a restart button: command `<root>/<id>/down/restart` payload `PRESS`.

An empty retained payload on the same topic removes the device from Home Assistant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from icp.messages import EventType

DISCOVERY_PREFIX = "homeassistant"
HA_STATUS_TOPIC = f"{DISCOVERY_PREFIX}/status"
INTERRUPTION_KINDS = ("BRANCH", "MODIFY", "CANCEL", "ABSORB")
EVENT_TYPES = tuple(e.value for e in EventType)


@dataclass(frozen=True)
class Origin:
    name: str = "segue-fleet"
    sw_version: str = "0.1.0"
    support_url: str = "https://github.com/segue/segue"


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    topic_root: str = "segue"
    model: str = "segue smart speaker"
    manufacturer: str = "segue"
    sw_version: str | None = None


def config_topic(device_id: str, prefix: str = DISCOVERY_PREFIX) -> str:
    return f"{prefix}/device/{device_id}/config"


def _sensor(uid: str, name: str, topic: str, template: str, **extra: Any) -> dict[str, Any]:
    return {"p": "sensor", "unique_id": uid, "name": name, "state_topic": topic,
            "value_template": template, **extra}


def device_config(dev: DeviceInfo, origin: Origin = Origin()) -> dict[str, Any]:
    base = f"{dev.topic_root}/{dev.device_id}"
    state, tele = f"{base}/up/state", f"{base}/up/telemetry"
    uid = f"segue_{dev.device_id}"
    diag = {"entity_category": "diagnostic"}
    cmps: dict[str, dict[str, Any]] = {
        "state": _sensor(f"{uid}_state", "State", state, "{{ value_json.state }}", icon="mdi:speaker"),
        "held_threads": _sensor(f"{uid}_held_threads", "Held threads", state,
                                "{{ value_json.held_threads }}", state_class="measurement"),
        "uptime": _sensor(f"{uid}_uptime", "Uptime", tele, "{{ value_json.uptime_s }}",
                          device_class="duration", unit_of_measurement="s", **diag),
        "cpu_temp": _sensor(f"{uid}_cpu_temp", "CPU temperature", tele, "{{ value_json.cpu_temp_c }}",
                            device_class="temperature", unit_of_measurement="°C",
                            state_class="measurement", **diag),
        "wake_count": _sensor(f"{uid}_wake_count", "Wake count", tele, "{{ value_json.wake_count }}",
                              state_class="total_increasing"),
        "cursor_lag": _sensor(f"{uid}_cursor_lag", "Cursor lag", tele, "{{ value_json.cursor_lag_ms }}",
                              device_class="duration", unit_of_measurement="ms",
                              state_class="measurement", **diag),
        "rtt": _sensor(f"{uid}_rtt", "MQTT round trip", tele, "{{ value_json.rtt_ms }}",
                       device_class="duration", unit_of_measurement="ms", state_class="measurement", **diag),
    }
    for kind in INTERRUPTION_KINDS:
        k = kind.lower()
        cmps[f"interruptions_{k}"] = _sensor(
            f"{uid}_interruptions_{k}", f"Interruptions {k}", tele,
            f"{{{{ value_json.interruptions.{kind} | default(0) }}}}", state_class="total_increasing")
    cmps["event"] = {"p": "event", "unique_id": f"{uid}_event", "name": "Event",
                     "state_topic": f"{base}/up/event", "event_types": list(EVENT_TYPES)}
    cmps["mute"] = {"p": "switch", "unique_id": f"{uid}_mute", "name": "Mute",
                    "command_topic": f"{base}/down/mute", "payload_on": "ON", "payload_off": "OFF",
                    "state_topic": state, "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
                    "state_on": "ON", "state_off": "OFF", "icon": "mdi:microphone-off"}
    cmps["restart"] = {"p": "button", "unique_id": f"{uid}_restart", "name": "Restart",
                       "command_topic": f"{base}/down/restart", "payload_press": "PRESS",
                       "device_class": "restart", "entity_category": "config"}
    device: dict[str, Any] = {"identifiers": [uid], "name": f"segue {dev.device_id}",
                              "manufacturer": dev.manufacturer, "model": dev.model}
    if dev.sw_version:
        device["sw_version"] = dev.sw_version
    return {
        "dev": device,
        "o": {"name": origin.name, "sw": origin.sw_version, "url": origin.support_url},
        "cmps": cmps,
        "availability": [{"topic": f"{base}/status", "payload_available": "online",
                          "payload_not_available": "offline"}],
        "qos": 1,
    }


def device_config_payload(dev: DeviceInfo, origin: Origin = Origin()) -> bytes:
    return json.dumps(device_config(dev, origin), sort_keys=True, ensure_ascii=False).encode()
