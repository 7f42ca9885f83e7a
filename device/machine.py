"""The device's state machine lives in the core (`icp.device`); this name stays for the device app,
the evaluation harness and tests that say `from device import machine as m`."""

from icp.device import *  # noqa: F401,F403
from icp.device import Machine, MachineSettings, State  # noqa: F401
from icp.device.commands import *  # noqa: F401,F403
from icp.device.events import *  # noqa: F401,F403
