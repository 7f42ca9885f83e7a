import os

import pytest

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def broker(tmp_path):
    """A real, anonymous Mosquitto on a free port (tests of security start their own config)."""
    from tests.support.mosquitto import Mosquitto

    with Mosquitto(tmp_path / "broker") as b:
        yield b
