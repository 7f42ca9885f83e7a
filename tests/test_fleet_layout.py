"""`segue-fleet broker-config` never writes a broker that cannot start (issue 11, item 7).

Mosquitto started as root drops to its `user` (here `mosquitto`) before it writes its pid file and
reads passwd/acl, so broker files inside the 0700 fleet home gave a broker that died at start with
"Unable to write pid file". broker-config now refuses that layout and says where to put the files;
these tests check the refusal against the real broker in both directions.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.broker import render_conf, unreachable_dir, write_broker_files
from provisioning.cli import main
from provisioning.fleet import Fleet
from provisioning.ids import ENGINE_USER
from provisioning.passwords import write_file
from provisioning.settings import BrokerSettings
from tests.support.mosquitto import MOSQUITTO, Mosquitto, free_port
from tests.test_fleet_broker import connect


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(os.geteuid() != 0 or not _user_exists("mosquitto"),
                       reason="needs root and a mosquitto user (the broker drops to it)"),
]


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory every user may enter, outside pytest's 0700 tmp tree (like /etc/mosquitto)."""
    d = Path(tempfile.mkdtemp(prefix="segue-broker-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_broker_files_inside_the_fleet_home_are_refused_with_advice(outside: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    home = outside / "home"
    assert main(["--home", str(home), "init"]) == 0
    rc = main(["--home", str(home), "broker-config", "--port", str(free_port()), "--out", str(home / "broker"),
               "--broker-user", "mosquitto"])
    err = capsys.readouterr().err
    assert rc == 2, "broker-config accepted a layout whose broker cannot start"
    assert f"cannot enter {home} (mode 0700" in err and "--out" in err and "'mosquitto'" in err
    assert not (home / "broker").exists()
    assert Fleet(home).broker_settings() is None  # nothing recorded either


def test_the_refused_layout_really_fails_and_the_advised_one_runs(tmp_path: Path, outside: Path) -> None:
    home = outside / "home"  # /tmp/segue-broker-*/home: only the 0700 home is in the broker's way
    fleet = Fleet.init(home)
    fleet.enroll("dev-a")
    # what broker-config used to write: the files in the fleet home, the broker dropping to mosquitto
    inside = BrokerSettings(out_dir=home / "broker", port=free_port(), bind="127.0.0.1", broker_user="mosquitto")
    assert unreachable_dir(inside.out_dir.parent, "mosquitto") == home
    inside.out_dir.mkdir()
    entry = pwd.getpwnam("mosquitto")
    os.chown(inside.out_dir, entry.pw_uid, entry.pw_gid)
    write_file(inside.conf, render_conf(inside, None), mode=0o644, owner="mosquitto")
    write_broker_files(inside, fleet.reg.active_credentials())
    run = subprocess.run([MOSQUITTO, "-c", str(inside.conf)], capture_output=True, text=True, timeout=10)
    assert run.returncode != 0 and "Unable to write pid file" in run.stderr + run.stdout

    # the advice: outside the fleet home; the broker, started as the tests start it, runs as mosquitto
    port = free_port()
    assert main(["--home", str(home), "broker-config", "--port", str(port), "--bind", "127.0.0.1",
                 "--out", str(outside / "broker"), "--broker-user", "mosquitto"]) == 0
    conf = (outside / "broker" / "mosquitto.conf").read_text()
    assert "user mosquitto" in conf
    with Mosquitto(tmp_path / "run", config=conf, port=port):
        assert fleet.broker_running()  # its pid file, written after dropping to mosquitto
        pid = int((outside / "broker" / "mosquitto.pid").read_text())
        assert os.stat(f"/proc/{pid}").st_uid == entry.pw_uid
        engine = connect(port, ENGINE_USER, fleet.read_password(ENGINE_USER))  # passwd read as mosquitto
        engine.close()
        fleet.enroll("dev-b")  # rewrite + SIGHUP: the broker re-reads its files as mosquitto
        dev_b = connect(port, "dev-b", fleet.read_password("dev-b"), client_id="dev-b")
        dev_b.close()
    fleet.close()
