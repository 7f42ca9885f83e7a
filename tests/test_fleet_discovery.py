"""Every key of the Home Assistant device discovery payload against today's HA schema (issue 11, item 10).

Home Assistant drops keys it does not know without a word (its discovery schemas use
`extra=vol.REMOVE_EXTRA`), so an outdated key is not an error there, just a setting that silently
does nothing. The tables below are transcribed from the MQTT integration of homeassistant 2026.2.3
(the wheel on PyPI): `schemas.py` (DEVICE_DISCOVERY_SCHEMA, MQTT_ENTITY_COMMON_SCHEMA, SHARED_OPTIONS),
`config.py` (SCHEMA_BASE), the platform modules (`sensor.py`, `event.py`, `switch.py`, `button.py`)
and `components/sensor/const.py` (units per device class).
"""

from __future__ import annotations

import re
from typing import Any

from icp.messages import dashboard
from provisioning.discovery import DeviceInfo, device_config

# root of a device payload (`homeassistant/device/<id>/config`)
ROOT_KEYS = {
    "device", "dev", "components", "cmps", "origin", "o", "state_topic", "command_topic", "qos", "encoding",
    "availability", "availability_mode", "availability_template", "availability_topic",
    "payload_available", "payload_not_available",
}
# root options HA hands down to every component (discovery.py `_merge_common_device_options`);
# `qos` and `encoding` are validated at the root but NOT handed down.
SHARED_OPTIONS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "command_topic",
    "payload_available", "payload_not_available", "state_topic",
}
DEVICE_KEYS = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
               "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
ORIGIN_KEYS = {"name", "sw_version", "sw", "support_url", "url"}
# every entity: SCHEMA_BASE + MQTT_ENTITY_COMMON_SCHEMA + the platform key
COMMON_KEYS = {
    "p", "platform", "qos", "encoding", "availability", "availability_mode", "availability_template",
    "availability_topic", "payload_available", "payload_not_available", "device", "entity_picture", "origin",
    "enabled_by_default", "entity_category", "icon", "json_attributes_topic", "json_attributes_template",
    "default_entity_id", "object_id", "unique_id",
}
PLATFORM_KEYS = {
    "sensor": {"state_topic", "value_template", "device_class", "expire_after", "force_update",
               "last_reset_value_template", "name", "options", "suggested_display_precision", "state_class",
               "unit_of_measurement"},
    "event": {"state_topic", "value_template", "device_class", "name", "event_types"},
    "switch": {"command_topic", "optimistic", "retain", "state_topic", "command_template", "name", "payload_off",
               "payload_on", "state_off", "state_on", "value_template", "device_class"},
    "button": {"command_template", "command_topic", "device_class", "name", "payload_press", "retain"},
}
#: `object_id` still parses but raises a repair issue since 2025.10 and stops working in 2026.4.
DEPRECATED = {"object_id", "obj_id"}
DEVICE_CLASS_UNITS = {"duration": {"d", "h", "min", "s", "ms", "μs"}, "temperature": {"°C", "°F", "K"}}
DEVICE_CLASS_STATE_CLASSES = {"duration": {"measurement", "total", "total_increasing"},
                              "temperature": {"measurement"}}
ENTITY_CATEGORIES = {"config", "diagnostic"}


def _payload() -> dict[str, Any]:
    return device_config(DeviceInfo("kitchen-1", "segue"))


def test_every_published_key_is_in_todays_schema() -> None:
    payload = _payload()
    assert set(payload) <= ROOT_KEYS, set(payload) - ROOT_KEYS
    assert set(payload["dev"]) <= DEVICE_KEYS, set(payload["dev"]) - DEVICE_KEYS
    assert set(payload["o"]) <= ORIGIN_KEYS, set(payload["o"]) - ORIGIN_KEYS
    for key, c in payload["cmps"].items():
        allowed = COMMON_KEYS | PLATFORM_KEYS[c["p"]]
        assert set(c) <= allowed, f"{key}: HA drops {sorted(set(c) - allowed)}"
        assert not set(c) & DEPRECATED, f"{key}: deprecated {sorted(set(c) & DEPRECATED)}"


def test_root_options_are_ones_ha_hands_down() -> None:
    """A root-level `qos` is accepted and ignored: every entity must carry its own."""
    payload = _payload()
    for option in set(payload) - {"dev", "o", "cmps"}:
        assert option in SHARED_OPTIONS, f"root-level {option!r} is not handed down to the components"
    for key, c in payload["cmps"].items():
        assert c.get("qos") == 1, f"{key}: subscribes/commands at QoS {c.get('qos', 0)}, not 1"


def test_default_entity_ids_are_valid_and_unique() -> None:
    cmps = _payload()["cmps"]
    ids = [c["default_entity_id"] for c in cmps.values()]
    assert len(set(ids)) == len(ids)
    for c in cmps.values():
        platform, _, object_id = c["default_entity_id"].partition(".")
        assert platform == c["p"] and re.fullmatch(r"[a-z0-9_]+", object_id), c["default_entity_id"]
    assert cmps["state"]["default_entity_id"] == "sensor.segue_kitchen_1_state"


def test_units_state_classes_and_categories_are_valid() -> None:
    for key, c in _payload()["cmps"].items():
        dc = c.get("device_class")
        if c["p"] == "sensor" and dc in DEVICE_CLASS_UNITS:
            assert c.get("unit_of_measurement") in DEVICE_CLASS_UNITS[dc], key
            if "state_class" in c:
                assert c["state_class"] in DEVICE_CLASS_STATE_CLASSES[dc], key
        if "entity_category" in c:
            assert c["entity_category"] in ENTITY_CATEGORIES, key
            assert not (c["p"] == "sensor" and c["entity_category"] == "config"), key


def test_dashboard_payloads_are_the_ones_the_device_accepts() -> None:
    cmps = _payload()["cmps"]
    assert (cmps["mute"]["payload_on"], cmps["mute"]["payload_off"]) == dashboard.PAYLOADS[dashboard.MUTE]
    assert (cmps["restart"]["payload_press"],) == dashboard.PAYLOADS[dashboard.RESTART]
    assert cmps["restart"]["retain"] is False  # the device refuses a retained restart
