"""Secrets never reach a log line: the settings that hold them hide them from repr."""

from __future__ import annotations

import logging

from device.config import MqttSettings as DeviceMqtt
from server.config import load


def test_settings_reprs_hide_secrets(tmp_path, caplog):
    cfg = tmp_path / "server.toml"
    cfg.write_text('[mqtt]\nusername = "svc.engine"\npassword = "hunter2-secret"\n')
    settings = load(cfg, env={"OPENAI_API_KEY": "sk-very-secret"})
    assert settings.mqtt.password == "hunter2-secret" and settings.llm.api_key == "sk-very-secret"
    device = DeviceMqtt(username="kitchen", password="pw-secret")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("settings %s %s", settings, device)
    text = caplog.text + repr(settings) + repr(device)
    for secret in ("hunter2-secret", "sk-very-secret", "pw-secret"):
        assert secret not in text
