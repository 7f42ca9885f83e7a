"""The device's state machine, in the core: events in with `now`, commands out (`DeviceMachine`)."""

from icp.device.commands import *  # noqa: F401,F403 - the command vocabulary
from icp.device.commands import Command, Orb
from icp.device.events import *  # noqa: F401,F403 - the event vocabulary
from icp.device.events import DropReason, Event
from icp.device.machine import HANDLERS, DeviceMachine, MachineSettings
from icp.device.table import TABLE, Deadline, State, Step

Machine = DeviceMachine  # the name the device app and the harness use

__all__ = ["Command", "Deadline", "DeviceMachine", "DropReason", "Event", "HANDLERS", "Machine", "MachineSettings",
           "Orb", "State", "Step", "TABLE"]
