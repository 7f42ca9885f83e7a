"""Settings of both peers through one loader (`servicekit.settings`, cattrs) and one MQTT type (`icp.settings`)."""

from __future__ import annotations

import pytest

from device import cli as device_cli
from device.config import from_dict as device_from_dict
from icp.segmenter import SegmenterSettings
from icp.settings import MqttSettings, SettingsError, apply_broker_url
from server.config import ConfigError
from server.config import from_dict as server_from_dict


def test_inline_table_section_becomes_its_dataclass():
    # Was a plain dict before, which would crash at the first segment.
    s = server_from_dict({"engine": {"segmenter": {"min_words": 2}}})
    assert isinstance(s.engine.segmenter, SegmenterSettings)
    assert s.engine.segmenter.min_words == 2 and s.engine.segmenter.max_words == SegmenterSettings().max_words


def test_enum_settings_load_by_value():
    for value in ("auto", "ask", "off"):
        assert server_from_dict({"engine": {"auto_resume": value}}).engine.auto_resume.value == value


@pytest.mark.parametrize("doc, needle", [
    ({"engine": {"segmenter": {"min_wordz": 2}}}, "[engine] segmenter: unknown setting(s) min_wordz"),
    ({"engine": {"lookahead_ms": "4000"}}, "[engine] lookahead_ms: must be a number"),
    ({"engine": {"auto_resume": "never"}}, "[engine] auto_resume: must be one of auto, ask, off"),
    ({"mqtt": {"tls": 1}}, "[mqtt] tls: must be true or false"),
    ({"mqtt": {"port": 70000}}, "[mqtt] port must be 1..65535"),
    ({"llm": {"model": 5}}, "[llm] model: must be a string"),
    ({"bogus": {}}, "unknown setting(s) bogus"),
    ({"strategy": "nope"}, "strategy must be one of"),
])
def test_server_bad_settings_fail_naming_the_key(doc, needle):
    with pytest.raises(ConfigError) as exc:
        server_from_dict(doc)
    assert needle in str(exc.value)


@pytest.mark.parametrize("doc, needle", [
    ({"audio": {"sample_rate": "16000"}}, "[audio] sample_rate: must be a whole number"),
    ({"audio": {"sample_rat": 16000}}, "[audio] unknown setting(s) sample_rat"),
    ({"audio": {"sample_rate": 96000}}, "[audio] sample_rate must be 8000..48000"),
    ({"wakeword": {"enabled": "yes"}}, "[wakeword] enabled: must be true or false"),
    ({"gpio": {"orb_pins": [1, 2]}}, "[gpio] orb_pins"),
    ({"speaker": {}}, "unknown setting(s) speaker"),
])
def test_device_bad_settings_fail_naming_the_key(doc, needle):
    with pytest.raises(SettingsError) as exc:
        device_from_dict(doc)
    assert needle in str(exc.value)


def test_device_toml_null_spellings_switch_gpio_parts_off():
    cfg = device_from_dict({"gpio": {"orb_pins": [], "mute_pin": -1}, "vad": {"silero_model": "/m/silero.onnx"}})
    assert cfg.gpio.orb_pins is None and cfg.gpio.mute_pin is None
    assert str(cfg.vad.silero_model) == "/m/silero.onnx"


def test_device_broker_url_mqtts_turns_tls_on_and_keeps_credentials():
    args = device_cli.build_parser().parse_args(["--broker", "mqtts://kitchen:s%40cret@broker.lan", "--id", "kitchen"])
    cfg = device_cli.resolve(args)
    m = cfg.mqtt
    assert (m.host, m.port, m.use_tls, m.username, m.password) == ("broker.lan", 8883, True, "kitchen", "s@cret")
    assert "s@cret" not in repr(cfg)


@pytest.mark.parametrize("url, expect", [
    ("mqtt://h", ("h", 1883, False)),
    ("mqtt://h:1884/", ("h", 1884, False)),
    ("mqtts://h", ("h", 8883, True)),
    ("mqtt://[::1]:2000", ("::1", 2000, False)),
])
def test_one_broker_url_parser(url, expect):
    m = apply_broker_url(MqttSettings(), url)
    assert (m.host, m.port, m.use_tls) == expect


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:x", "mqtt://h:0", "h:1883"])
def test_bad_broker_urls_say_what_to_write(url):
    with pytest.raises(SettingsError, match="mqtt://host:port|1..65535"):
        apply_broker_url(MqttSettings(), url)


def test_a_ca_file_means_tls():
    assert MqttSettings(ca="/etc/segue/ca.pem").use_tls and not MqttSettings().use_tls
