"""Socket options every segue MQTT client wants.

`tcp_no_delay` is paho's `on_socket_open` callback: it switches Nagle's algorithm off. segue's
messages are small and latency-bound both ways (an interrupt, a resume, a PUBACK, then a command);
with Nagle on, a small write waits while earlier data is unacknowledged, and the peer delays its
ACK by up to 40 ms on Linux, so a command could sit 40 ms in the sender's socket. paho leaves Nagle
on; Mosquitto does the same towards its clients unless `set_tcp_nodelay true` is in its
configuration (segue's generated broker configurations have it).
"""

from __future__ import annotations

import socket
from typing import Any


def tcp_no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """paho `on_socket_open`: TCP_NODELAY on the client's socket (nothing to do for a websocket)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not TCP (a websocket wrapper): nothing to do
        pass
