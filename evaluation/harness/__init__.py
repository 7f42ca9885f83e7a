"""The evaluation harness: real device and server code, a real broker, a virtual card and listener."""

from evaluation.harness.trace import Trace, TurnRecord
from evaluation.harness.world import MODES, STRATEGIES, RunOptions, run_scenario

__all__ = ["MODES", "STRATEGIES", "RunOptions", "Trace", "TurnRecord", "run_scenario"]
