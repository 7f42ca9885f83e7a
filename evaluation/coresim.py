"""A deterministic world around the core's state machine, for fast property tests of icp/ alone.

It plays the I/O layer's part by the book (generation text arrives in chunks, synthesis gives
fixed-length word timings, a device plays segments in order and reports cursors), with time passed
in explicitly. No sockets, no threads, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icp import commands as C
from icp import events as E
from icp.dispositions import Classification
from icp.engine.partials import is_partial_request
from icp.machine import EngineSettings, Session
from icp.messages import Cursor, PlaybackEvent
from icp.strategies import Strategy, strategy
from icp.words import WordTiming, split_words

WORD_MS = 300.0
GAP_MS = 50.0
RATE = 16000


def timings(text: str) -> tuple[tuple[WordTiming, ...], int]:
    words, t = [], 0.0
    for w in split_words(text):
        words.append(WordTiming(w, t, t + WORD_MS))
        t += WORD_MS + GAP_MS
    return tuple(words), int(t * RATE / 1000) + 1


@dataclass
class Sim:
    replies: dict[str, str]  # substring of the last user message -> reply
    classify: object = None  # callable(ClassifyRequest) -> Classification
    strategy_name: str = "icp"
    settings: EngineSettings = field(default_factory=lambda: EngineSettings(auto_resume_delay_s=1.0))
    now: float = 0.0
    session: Session = field(init=False)
    llm_requests: list[list[dict[str, str]]] = field(default_factory=list)
    gens: dict[str, list[str]] = field(default_factory=dict)  # generation id -> chunks left
    synth: list[C.Synthesise] = field(default_factory=list)
    queue: list[C.SendSegment] = field(default_factory=list)  # device playback queue
    playing: tuple[C.SendSegment, int] | None = None  # (segment, sample position)
    paused: bool = False
    sent: list[C.SendSegment] = field(default_factory=list)
    heard: list[tuple[int, int, int]] = field(default_factory=list)  # (segment, from, to) reaching the ear
    log: list[C.Command] = field(default_factory=list)
    on_generation: object = None  # called with the messages of each LLM request, as it is made
    last_received: int = 0  # the device's end of the `prev` chain
    hole: bool = False  # a segment was lost: drop until the next flush
    lose_next: int = 0  # test hook: this many of the next segments vanish on the way
    # How the device says it ran dry: at every step (False), or once until it plays again, as the
    # real device does (it sends no heartbeats once idle).
    idle_once: bool = False
    _idle_said: bool = field(default=False, init=False, repr=False)
    # A partial's classify request (issue 12) is answered only by this (callable(ClassifyRequest) ->
    # Classification or None: no answer); the scripted `classify` is for finals.
    classify_partial: object = None
    partial_answers: list[tuple[str, Classification]] = field(default_factory=list)
    # The device's answer to an engine `pause`: a `paused` report with the cursor it paused at, at the
    # next step (as the real device reports it, one round trip later).
    paused_reports: list[Cursor | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        strat: Strategy = strategy(self.strategy_name)
        self.session = Session("dev1", self.settings, strat)
        self.send(E.DeviceConnected(self.now))

    # -- the I/O layer's side ------------------------------------------------------------------
    def send(self, event: E.Event) -> list[C.Command]:
        out = self.session.handle(event)
        self.log.extend(out)
        for cmd in out:
            self.carry_out(cmd)
        return out

    def carry_out(self, cmd: C.Command) -> None:
        if isinstance(cmd, C.StartGeneration):
            self.llm_requests.append(list(cmd.messages))
            if self.on_generation is not None:
                self.on_generation(list(cmd.messages))  # type: ignore[operator]
            last_user = next(m["content"] for m in reversed(cmd.messages) if m["role"] == "user")
            reply = next((r for k, r in self.replies.items() if k.lower() in last_user.lower()),
                         self.replies.get("", "I do not know."))
            words = reply.split(" ")
            self.gens[cmd.generation_id] = [" ".join(words[i:i + 3]) + " " for i in range(0, len(words), 3)]
        elif isinstance(cmd, C.CancelGeneration):
            self.gens.pop(cmd.generation_id, None)
        elif isinstance(cmd, C.Synthesise):
            self.synth.append(cmd)
        elif isinstance(cmd, C.SendSegment):
            self.sent.append(cmd)
            if self.lose_next:
                self.lose_next -= 1
                return
            if self.hole or cmd.segment.prev != self.last_received:
                self.hole = True  # never play past a lost segment
                return
            self.last_received = cmd.segment.segment
            self.queue.append(cmd)
        elif isinstance(cmd, C.DeviceControl):
            if cmd.action.value == "pause":
                self.pause_device()
                self.paused_reports.append(self.cursor())
            elif cmd.action.value == "resume":
                self.paused = False
            elif cmd.action.value == "flush":
                self.queue.clear()
                self.playing = None
                self.paused = False
                self.last_received, self.hole = 0, False
        elif isinstance(cmd, C.Classify) and is_partial_request(cmd.request_id):
            answer = self.classify_partial(cmd.request) if self.classify_partial is not None else None  # type: ignore[operator]
            if answer is not None:
                self.partial_answers.append((cmd.request_id, answer))
        elif isinstance(cmd, C.Classify):
            assert self.classify is not None
            result: Classification = self.classify(cmd.request)  # type: ignore[operator]
            self.pending_classification = (cmd.request_id, result)

    def pause_device(self) -> None:
        self.paused = True

    def cursor(self) -> Cursor | None:
        if self.playing is not None:
            return Cursor(self.playing[0].segment.segment, self.playing[1])
        last = self.heard[-1] if self.heard else None
        return Cursor(last[0], last[2]) if last else None

    # -- the world advancing -------------------------------------------------------------------
    def step(self, dt: float = 0.05) -> None:
        """Advance time: generation chunks, synthesis, playback (20 ms ticks), heartbeats."""
        self.now += dt
        while self.paused_reports:
            self.send(E.PlaybackReported(self.now, PlaybackEvent.PAUSED, self.paused_reports.pop(0), self.queued_ms()))
        while self.partial_answers:
            rid, answer = self.partial_answers.pop(0)
            self.send(E.Classified(self.now, rid, answer.disposition, answer.confidence, answer.source))
        pending = getattr(self, "pending_classification", None)
        if pending is not None:
            self.pending_classification = None
            rid, result = pending
            self.send(E.Classified(self.now, rid, result.disposition, result.confidence, result.source))
        for gid in list(self.gens):
            chunks = self.gens.get(gid)
            if chunks is None:
                continue
            if chunks:
                self.send(E.GenerationText(self.now, gid, chunks.pop(0)))
            else:
                del self.gens[gid]
                self.send(E.GenerationFinished(self.now, gid))
        while self.synth:
            cmd = self.synth.pop(0)
            words, samples = timings(cmd.text)
            self.send(E.SegmentSynthesised(self.now, cmd.segment_id, samples, RATE, words))
        self.play(int(dt * RATE))
        self.send(E.Tick(self.now))

    def play(self, samples: int) -> None:
        while samples > 0 and not self.paused:
            if self.playing is None:
                if not self.queue:
                    if any(s.heard_samples < s.samples and not s.dropped for s in self.session.conv.segments) \
                            and not (self.idle_once and self._idle_said):
                        self._idle_said = True
                        self.send(E.PlaybackReported(self.now, PlaybackEvent.IDLE, self.cursor(), 0.0))
                    return
                self.playing = (self.queue.pop(0), 0)
                self._idle_said = False
            seg, pos = self.playing
            n = min(samples, seg.segment.samples - pos)
            self.heard.append((seg.segment.segment, pos, pos + n))
            samples -= n
            pos += n
            if pos >= seg.segment.samples:
                self.playing = None
                self.send(E.PlaybackReported(self.now, PlaybackEvent.SEGMENT_END, Cursor(seg.segment.segment, pos),
                                             self.queued_ms()))
            else:
                self.playing = (seg, pos)
                self.send(E.PlaybackReported(self.now, PlaybackEvent.HEARTBEAT, Cursor(seg.segment.segment, pos),
                                             self.queued_ms()))

    def queued_ms(self) -> float:
        samples = sum(s.segment.samples for s in self.queue)
        if self.playing is not None:
            samples += self.playing[0].segment.samples - self.playing[1]
        return samples * 1000.0 / RATE

    def run_until(self, predicate, limit_s: float = 120.0) -> None:
        end = self.now + limit_s
        while not predicate():
            if self.now > end:
                raise AssertionError(f"timed out in state {self.session.state}")
            self.step()

    # -- the user's side ------------------------------------------------------------------------
    def say(self, text: str, interrupt: bool | None = None) -> None:
        uid = f"utt{len(self.log)}"
        speaking = self.session.state.value in ("thinking", "speaking")
        if interrupt if interrupt is not None else speaking:
            self.paused = True
            self.send(E.InterruptReported(self.now, uid, self.cursor()))
        self.send(E.UtterancePartial(self.now, uid, (text.split() or [""])[0]))
        self.send(E.UtteranceFinal(self.now, uid, text))
        self.step()

    # -- ground truth -----------------------------------------------------------------------------
    def heard_words(self, item_id: str, threshold: float = 0.5) -> list[str]:
        """Words of an item the listener heard, from the samples that reached the ear."""
        out: list[str] = []
        segs = [s.segment for s in self.sent if s.segment.item == item_id]
        for seg in segs:
            played = sum(b - a for sid, a, b in self.heard if sid == seg.segment)
            ms = played * 1000.0 / RATE
            for w in seg.words:
                frac = 0.0 if ms <= w.start_ms else min(1.0, (ms - w.start_ms) / (w.end_ms - w.start_ms))
                if frac > threshold or played >= seg.samples:
                    out.append(w.word)
                else:
                    break
        return out

    def idle(self) -> bool:
        return self.session.state.value == "idle" and not self.queue and self.playing is None
