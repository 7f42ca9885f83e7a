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

Checked against Home Assistant's MQTT integration as released in homeassistant 2026.2.3 (its
`schemas.py`, `discovery.py` and platform schemas; docs/fleet.md lists every key):

- `qos` is set on every component: HA validates a root-level `qos` in a device payload but does not
  hand it down to the components (only availability, `state_topic` and `command_topic` are shared),
  so a root-level `qos: 1` alone left every entity subscribed at QoS 0.
- `default_entity_id` (HA 2025.10+; it replaced `object_id`, which HA stops reading in 2026.4) pins
  each entity id to `<platform>.segue_<device id>_<component>`, so ids stay put when the device is
  renamed in HA. Older HA versions drop the unknown key silently.

Topics, the status payloads and the dashboard payloads all come from `icp.messages`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from icp.messages import DeviceEvent, DeviceState, EventType, Telemetry, Topics, dashboard, topic_level
from icp.messages.topics import STATUS_OFFLINE, STATUS_ONLINE

DISCOVERY_PREFIX = "homeassistant"
HA_STATUS_TOPIC = f"{DISCOVERY_PREFIX}/status"
INTERRUPTION_KINDS = ("BRANCH", "MODIFY", "CANCEL", "ABSORB")
EVENT_TYPES = tuple(e.value for e in EventType)
#: Every entity subscribes and commands at QoS 1 (see the module docstring for why per component).
QOS = 1


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


def _entity_id_base(device_id: str) -> str:
    return "segue_" + device_id.replace("-", "_")


def device_config(dev: DeviceInfo, origin: Origin = Origin()) -> dict[str, Any]:
    topics = Topics(dev.topic_root)
    dev_id = dev.device_id
    state, tele = topics.up(dev_id, topic_level(DeviceState)), topics.up(dev_id, topic_level(Telemetry))
    uid = f"segue_{dev_id}"
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
                     "state_topic": topics.up(dev_id, topic_level(DeviceEvent)), "event_types": list(EVENT_TYPES)}
    on, off = dashboard.MUTE_ON, dashboard.MUTE_OFF
    cmps["mute"] = {"p": "switch", "unique_id": f"{uid}_mute", "name": "Mute",
                    "command_topic": topics.down(dev_id, dashboard.MUTE), "payload_on": on, "payload_off": off,
                    "state_topic": state, "value_template": f"{{{{ '{on}' if value_json.muted else '{off}' }}}}",
                    "state_on": on, "state_off": off, "icon": "mdi:microphone-off"}
    cmps["restart"] = {"p": "button", "unique_id": f"{uid}_restart", "name": "Restart",
                       "command_topic": topics.down(dev_id, dashboard.RESTART),
                       "payload_press": dashboard.RESTART_PRESS, "retain": False,
                       "device_class": "restart", "entity_category": "config"}
    for key, c in cmps.items():
        c["default_entity_id"] = f"{c['p']}.{_entity_id_base(dev_id)}_{key}"
        c["qos"] = QOS
    device: dict[str, Any] = {"identifiers": [uid], "name": f"segue {dev_id}",
                              "manufacturer": dev.manufacturer, "model": dev.model}
    if dev.sw_version:
        device["sw_version"] = dev.sw_version
    return {
        "dev": device,
        "o": {"name": origin.name, "sw": origin.sw_version, "url": origin.support_url},
        "cmps": cmps,
        "availability": [{"topic": topics.status(dev_id), "payload_available": STATUS_ONLINE,
                          "payload_not_available": STATUS_OFFLINE}],
    }


def device_config_payload(dev: DeviceInfo, origin: Origin = Origin()) -> bytes:
    return json.dumps(device_config(dev, origin), sort_keys=True, ensure_ascii=False).encode()
