"""Tests start their broker with the package's launcher (also used by the harness and benchmarks)."""

from evaluation.broker import MOSQUITTO, Mosquitto, free_port, wait_for_port

__all__ = ["MOSQUITTO", "Mosquitto", "free_port", "wait_for_port"]
