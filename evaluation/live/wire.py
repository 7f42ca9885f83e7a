"""The listener on the wire: every message on one device's topics, as the broker delivered it.

The harness subscribes to `<root>/<id>/#` with its own MQTT client (it is neither the engine nor the
device) and keeps what live mode may know from outside: segment announcements (text, word timings),
the exact PCM of every audio frame, controls, states, wakes, utterances, interrupts and playback
reports, each with the time it arrived here. `mqtt.jsonl` gets one line per message (audio frames
summarised as segment, offset, samples, last).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt

from icp.messages import AudioFrame, Direction, Segment, Topics, decode


@dataclass
class SegmentAudio:
    segment: Segment
    announced: float  # monotonic time the announcement arrived
    pcm: bytearray = field(default_factory=bytearray)
    complete: bool = False

    def array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.pcm), dtype="<i2")


@dataclass(frozen=True)
class WireEvent:
    t: float  # monotonic arrival time
    direction: str  # "up" | "down" | "status"
    level: str
    body: Any  # the decoded body (or the plain text of status/mute/restart)


class WireTap:
    def __init__(self, broker_url: str, topic_root: str, device_id: str, jsonl: Path | None = None) -> None:
        self.topics = Topics(topic_root)
        self.device_id = device_id
        self.segments: dict[int, SegmentAudio] = {}
        self.events: list[WireEvent] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._out: TextIO | None = open(jsonl, "w") if jsonl else None  # noqa: SIM115 - closed in stop()
        self.t_base = time.monotonic()
        u = urlsplit(broker_url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"segue-eval-ear-{secrets.token_hex(3)}",
                                  protocol=mqtt.MQTTv5)
        if u.username:
            self.client.username_pw_set(u.username, u.password)
        if u.scheme == "mqtts":
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self.client.connect(u.hostname or "127.0.0.1", u.port or 1883, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError(f"the harness could not connect to the broker at {broker_url}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        client.subscribe(f"{self.topics.root}/{self.device_id}/#", qos=1)
        time.sleep(0.05)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            self._take(now, msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception as exc:  # noqa: BLE001 - a message the codecs refuse is a finding, not a crash
            with self._lock:
                self.errors.append(f"wire: {msg.topic}: {type(exc).__name__}: {exc}")
            self._write({"t": round(now - self.t_base, 4), "topic": msg.topic, "undecodable": str(exc)})

    def _take(self, now: float, topic: str, payload: bytes, retained: bool) -> None:
        t = self.topics.parse(topic)
        line: dict[str, Any] = {"t": round(now - self.t_base, 4), "topic": topic}
        if retained:
            line["retained"] = True
        if t.direction is None or t.level in ("mute", "restart"):
            body: Any = payload.decode(errors="replace")
            line["payload"] = body
            direction = "status" if t.direction is None else t.direction.value
        elif t.direction is Direction.DOWN and t.level == "audio":
            frame = AudioFrame.decode(payload)
            line["audio"] = {"segment": frame.segment, "offset": frame.offset, "samples": frame.samples,
                             "last": frame.last}
            with self._lock:
                seg = self.segments.get(frame.segment)
                if seg is not None and frame.offset == len(seg.pcm) // 2:
                    seg.pcm += frame.pcm
                    seg.complete = frame.last or len(seg.pcm) // 2 >= seg.segment.samples
            self._write(line)
            return
        else:
            env = decode(payload, t.direction, t.level)
            body = env.body
            line["payload"] = json.loads(payload)
            direction = t.direction.value
            if isinstance(body, Segment):
                with self._lock:
                    self.segments[body.segment] = SegmentAudio(body, now)
        with self._lock:
            self.events.append(WireEvent(now, direction, t.level, body))
        self._write(line)

    def _write(self, line: dict[str, Any]) -> None:
        if self._out is not None:
            with self._lock:
                self._out.write(json.dumps(line) + "\n")

    # -- views ------------------------------------------------------------------------------------
    def snapshot(self) -> list[WireEvent]:
        with self._lock:
            return list(self.events)

    def of(self, level: str, direction: str | None = None, since: float = 0.0) -> list[WireEvent]:
        return [e for e in self.snapshot() if e.level == level and e.t >= since
                and (direction is None or e.direction == direction)]

    def last(self, level: str, direction: str | None = None) -> WireEvent | None:
        found = self.of(level, direction)
        return found[-1] if found else None

    def segment_list(self) -> list[SegmentAudio]:
        with self._lock:
            return [self.segments[k] for k in sorted(self.segments)]

    def stop(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        if self._out is not None:
            with self._lock:
                self._out.close()
                self._out = None
