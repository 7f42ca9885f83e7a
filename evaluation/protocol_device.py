"""A protocol-level device for tests and benchmarks: publishes what a segue device would, through a real broker.

It does not run audio: the test moves its playback position explicitly (`play_ms`), so assertions
about heard words are exact. Everything it sends goes through the real codecs.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from icp.messages import (
    AudioFrame, Control, Cursor, Direction, EngineState, Envelope, Hello, Interrupt, PlaybackEvent,
    PlaybackReport, Segment, Topics, Utterance, Wake, WakeSource, decode, encode, topic_level,
)
from icp.messages.base import Body
from servicekit.net import tcp_no_delay


@dataclass
class PlayedSegment:
    seg: Segment
    pcm: bytearray = field(default_factory=bytearray)
    complete: bool = False
    position: int = 0  # samples heard
    dropped: bool = False  # flushed before it finished
    first_audio_at: float | None = None  # time.monotonic() when its first audio frame arrived

    @property
    def pending(self) -> bool:
        return not self.dropped and self.position < self.seg.samples


class ProtocolDevice:
    def __init__(self, broker_url: str, device_id: str = "dev1", root: str = "segue",
                 username: str | None = None, password: str | None = None) -> None:
        self.device_id = device_id
        self.topics = Topics(root)
        self.session = secrets.token_hex(4)
        self.seq = itertools.count(1)
        self.segments: list[PlayedSegment] = []
        self.controls: list[Control] = []
        self.states: list[str] = []
        self.lock = threading.Condition()
        self.paused = False
        url = urlsplit(broker_url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:4]}",
                                  protocol=mqtt.MQTTv5)
        self.client.will_set(self.topics.status(device_id), b"offline", qos=1, retain=True)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_socket_open = tcp_no_delay  # as segue's own clients (servicekit.net)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: (c.subscribe(self.topics.device_subscription(device_id), 1),
                                                         self.connected.set())
        self.client.connect(url.hostname, url.port)
        self.client.loop_start()
        assert self.connected.wait(5), "test device could not connect"
        time.sleep(0.2)  # let the subscription settle

    # -- sending ---------------------------------------------------------------------------------
    def send(self, body: Body) -> None:
        env = Envelope(self.session, next(self.seq), uuid.uuid4().hex[:8], body)
        self.client.publish(self.topics.up(self.device_id, topic_level(body)), encode(env), qos=1).wait_for_publish(5)

    def hello(self) -> None:
        self.client.publish(self.topics.status(self.device_id), b"online", qos=1, retain=True)
        self.send(Hello(16000, (), "test"))

    def say(self, text: str, interrupt: bool = False) -> str:
        uid = uuid.uuid4().hex[:8]
        if interrupt:
            with self.lock:
                self.paused = True
            self.send(Interrupt(uid, self.cursor(), onset_ms=0.0))
        else:
            self.send(Wake(WakeSource.BUTTON))
        self.send(Utterance(uid, False, text.split()[0]))
        self.final_sent_at = time.monotonic()
        self.send(Utterance(uid, True, text))
        return uid

    # -- playback ----------------------------------------------------------------------------------
    def cursor(self) -> Cursor | None:
        with self.lock:
            played = [s for s in self.segments if s.position > 0]
            if not played:
                return None
            last = played[-1]
            return Cursor(last.seg.segment, last.position)

    def play_ms(self, ms: float, heartbeat: bool = True, timeout: float = 20.0, wait: bool = True) -> None:
        """Play `ms` of queued audio in order, waiting for audio to arrive if needed (unless not `wait`)."""
        remaining = int(ms * 16)
        deadline = time.monotonic() + timeout
        while remaining > 0:
            with self.lock:
                seg = next((s for s in self.segments if s.pending), None)
                if seg is None or self.paused or len(seg.pcm) // 2 <= seg.position:
                    if not wait:
                        return
                    if time.monotonic() > deadline:
                        raise AssertionError("no audio to play")
                    self.lock.wait(0.05)
                    continue
                n = min(remaining, len(seg.pcm) // 2 - seg.position)
                seg.position += n
                remaining -= n
                ended = seg.position >= seg.seg.samples
                cursor = Cursor(seg.seg.segment, seg.position)
            if ended:
                self.send(PlaybackReport(PlaybackEvent.SEGMENT_END, cursor))
            elif heartbeat:
                self.send(PlaybackReport(PlaybackEvent.HEARTBEAT, cursor))

    def play_all(self, settle_s: float = 1.0, timeout: float = 30.0) -> None:
        """Play until nothing new arrives for `settle_s`."""
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                pending = any(s.pending and s.position < len(s.pcm) // 2 for s in self.segments) and not self.paused
            if pending:
                self.play_ms(100, wait=False)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > settle_s:
                return
            else:
                time.sleep(0.05)
        raise AssertionError("playback did not settle")

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError("condition not reached")
                self.lock.wait(0.05)

    def heard_words(self, item: str) -> list[str]:
        out = []
        with self.lock:
            for s in self.segments:
                if s.seg.item != item:
                    continue
                ms = s.position / 16.0
                for w in s.seg.words:
                    if s.position >= s.seg.samples or (ms - w.start_ms) / max(w.end_ms - w.start_ms, 1e-9) > 0.5:
                        out.append(w.word)
                    else:
                        break
        return out

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def kill(self) -> None:
        """Drop the connection without a DISCONNECT, so the broker publishes the Last Will."""
        self.client.loop_stop()
        self.client.socket().close()

    # -- receiving ----------------------------------------------------------------------------------
    def _on_message(self, client, userdata, msg) -> None:
        where = self.topics.parse(msg.topic)
        with self.lock:
            if where.level == "audio":
                frame = AudioFrame.decode(msg.payload)
                seg = next((s for s in self.segments if s.seg.segment == frame.segment), None)
                if seg is not None and frame.offset * 2 == len(seg.pcm):
                    if seg.first_audio_at is None:
                        seg.first_audio_at = time.monotonic()
                    seg.pcm.extend(frame.pcm)
                    seg.complete = frame.last
            else:
                body = decode(msg.payload, Direction.DOWN, where.level).body
                if isinstance(body, Segment):
                    self.segments.append(PlayedSegment(body))
                elif isinstance(body, Control):
                    self.controls.append(body)
                    if body.action.value == "flush":
                        for s in self.segments:
                            if s.pending:
                                s.dropped = True
                        self.paused = False
                    elif body.action.value == "resume":
                        self.paused = False
                    elif body.action.value == "pause":
                        self.paused = True
                elif isinstance(body, EngineState):
                    self.states.append(body.state)
            self.lock.notify_all()

