"""The engine and devices on the fleet's least-privilege broker, each with its own credential."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from evaluation.broker import Mosquitto, free_port
from evaluation.openai_server import ScriptedLLMServer
from evaluation.protocol_device import ProtocolDevice
from provisioning.fleet import Fleet
from provisioning.settings import BrokerSettings
from server.app import ServerApp
from server.config import load

pytestmark = pytest.mark.broker


def test_engine_serves_enrolled_devices_through_the_generated_acls(tmp_path: Path) -> None:
    fleet = Fleet.init(tmp_path / "home")
    for dev in ("kitchen", "hall"):
        fleet.enroll(dev)
    settings = fleet.broker_config(BrokerSettings(
        out_dir=tmp_path / "broker", port=free_port(), tls_port=None, bind="127.0.0.1",
        public_host="127.0.0.1", broker_user="root" if os.geteuid() == 0 else None))
    fleet.service_bundle("engine", tmp_path / "server.toml")
    with Mosquitto(tmp_path / "run", config=settings.conf.read_text(), port=settings.port) as broker, \
            ScriptedLLMServer([{"default": "The kettle is in the kitchen, next to the sink."}]) as llm:
        server_settings = load(tmp_path / "server.toml", env={})
        server_settings = replace(
            server_settings, llm=replace(server_settings.llm, base_url=llm.base_url, model="scripted"),
            tts=replace(server_settings.tts, backend="espeak"),
            storage=replace(server_settings.storage, backend="memory"))
        app = ServerApp(server_settings).start()
        devices = [ProtocolDevice(broker.url, device_id=d, username=d, password=fleet.read_password(d))
                   for d in ("kitchen", "hall")]
        try:
            for dev in devices:
                dev.hello()
                dev.say("where is the kettle")
            for dev in devices:
                dev.wait_for(lambda dev=dev: dev.segments and dev.segments[0].complete)
                assert dev.segments[0].seg.text.startswith("The kettle")
            # each device got only its own reply
            assert {d.segments[0].seg.item for d in devices} and all(len(d.segments) <= 3 for d in devices)
        finally:
            for dev in devices:
                dev.stop()
            app.stop()
    fleet.close()
