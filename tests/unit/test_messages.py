"""Wire codecs (icp/messages): round trips, every validation rule of docs/protocol.md, audio frames,
topics and the replay/sequence tracker.

Some tests pin down codec bugs found while writing this file (since fixed): they describe the
behaviour docs/protocol.md requires.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icp.dispositions import Disposition, Hint
from icp.errors import ProtocolError
from icp.messages import (
    BODIES,
    DeviceEvent,
    EventType,
    MAX_JSON_BYTES,
    PROTOCOL_VERSION,
    REGISTRY,
    Action,
    AudioFrame,
    Capability,
    Control,
    Cursor,
    DeviceState,
    DeviceStatus,
    Direction,
    EngineState,
    Envelope,
    Hello,
    Interrupt,
    PlaybackEvent,
    PlaybackReport,
    Segment,
    SequenceTracker,
    Telemetry,
    Topic,
    Topics,
    Utterance,
    Wake,
    WakeSource,
    decode,
    encode,
    split_pcm,
    topic_level,
)
from icp.messages import envelope as envelope_module
from icp.words import WordTiming

# SEGUE_HYPOTHESIS_EXAMPLES=2000 for a deeper local run; the default keeps the file under a few seconds
FAST = settings(max_examples=int(os.environ.get("SEGUE_HYPOTHESIS_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
UP, DOWN = Direction.UP, Direction.DOWN


# --------------------------------------------------------------------------------------------------
# realistic sample messages, one or more per message type


def _timings(words: list[str], start: float = 0.0, step: float = 180.0, gap: float = 20.0) -> tuple[WordTiming, ...]:
    out, t = [], start
    for w in words:
        out.append(WordTiming(w, t, t + step))
        t += step + gap
    return tuple(out)


SEGMENT_TEXT = "Right, as I was saying, the forecast for tomorrow is sunny."
SEGMENT_WORDS = _timings(SEGMENT_TEXT.split())  # 11 words, last ends at 10*200+180 = 2180 ms

SAMPLES: dict[str, Any] = {
    "hello": Hello(sample_rate=16000, capabilities=(Capability.WAKE, Capability.ASR, Capability.AEC),
                   software="segue-device 0.4.1"),
    "hello_bare": Hello(sample_rate=48000, capabilities=(), software=""),
    "wake": Wake(WakeSource.WAKE_WORD, 0.87),
    "wake_button": Wake(WakeSource.BUTTON, None),
    "utterance_final": Utterance("utt-0007", True, "what's the weather tomorrow",
                                 words=_timings(["what's", "the", "weather", "tomorrow"], 120.0)),
    "utterance_partial": Utterance("utt-0007", False, "", words=None, hint=None),
    "utterance_cancel": Utterance("utt:0008", True, "stop", words=None, hint=Hint.CANCEL),
    "interrupt": Interrupt("utt-0009", Cursor(17, 24000), 12345.5, None),
    "interrupt_nothing_heard": Interrupt("utt-0010", None, 0.0, Hint.CANCEL),
    "playback": PlaybackReport(PlaybackEvent.PAUSED, Cursor(17, 24000), 480.0, 98765.25),
    "playback_idle": PlaybackReport(PlaybackEvent.IDLE, None, 0.0, 0.0),
    "device_state": DeviceState(DeviceStatus.SPEAKING, False, 2),
    "device_state_muted": DeviceState(DeviceStatus.MUTED, True, 64),
    "telemetry": Telemetry(uptime_s=3600.5, cpu_temp_c=54.2, wake_count=12,
                           interruptions={"BRANCH": 3, "CANCEL": 1}, cursor_lag_ms=35.0, rtt_ms=12.5),
    "event": DeviceEvent(EventType.INTERRUPT_BRANCH),
    "telemetry_nulls": Telemetry(uptime_s=0.0, cpu_temp_c=None, wake_count=0, interruptions={},
                                 cursor_lag_ms=None, rtt_ms=None),
    "segment": Segment(segment=17, item="item_42", thread="thread-1", text=SEGMENT_TEXT,
                       words=SEGMENT_WORDS, bridge_words=5, sample_rate=24000, samples=24000 * 3),
    "segment_empty": Segment(segment=1, item="i", thread="t", text="", words=(), bridge_words=0,
                             sample_rate=8000, samples=1),
    "control": Control(Action.PAUSE, "BRANCH"),
    "control_flush": Control(Action.FLUSH, ""),
    "control_branch": Control(Action.FLUSH, "BRANCH", Disposition.BRANCH),
    "control_absorb": Control(Action.RESUME, "ABSORB", Disposition.ABSORB),
    "engine_state": EngineState("speaking", 1),
}


def env(body: Any, seq: int = 42, session: str = "b7d1e0aa", msg_id: str = "3f2a9c1e") -> Envelope:
    return Envelope(session, seq, msg_id, body)


def wire(name: str) -> dict[str, Any]:
    """The sample as a decoded JSON document, ready to be broken."""
    return json.loads(encode(env(SAMPLES[name])))


def where(name: str) -> tuple[Direction, str]:
    body = SAMPLES[name]
    return body.DIRECTION, topic_level(body)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


def reject(payload: bytes | dict[str, Any], direction: Direction, level: str, field: str) -> ProtocolError:
    if not isinstance(payload, bytes):
        payload = dumps(payload)
    with pytest.raises(ProtocolError) as info:
        decode(payload, direction, level)
    assert info.value.field == field, f"expected field {field!r}, got {info.value.field!r}: {info.value}"
    return info.value


_DELETE = object()


def mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or delete, value=_DELETE) `path` like 'cursor.extra' or 'words[2].end_ms' in a copy."""
    doc = copy.deepcopy(doc)
    tokens = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    target: Any = doc
    for tok in tokens[:-1]:
        target = target[int(tok[1:-1])] if tok.startswith("[") else target[tok]
    last = tokens[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return doc


# --------------------------------------------------------------------------------------------------
# round trips


def test_samples_cover_every_body_type():
    assert {type(b) for b in SAMPLES.values()} == set(BODIES)
    assert set(REGISTRY) == {cls.TYPE for cls in BODIES}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_on_topic_level(name):
    body = SAMPLES[name]
    original = env(body, seq=7)
    payload = encode(original)
    decoded = decode(payload, body.DIRECTION, topic_level(body))
    assert decoded == original
    assert type(decoded.body) is type(body)
    assert decoded.type == body.TYPE
    # the wire form is what the protocol page shows: the envelope, then the body fields
    doc = json.loads(payload)
    assert doc["v"] == PROTOCOL_VERSION == 1
    assert doc["type"] == body.TYPE
    assert (doc["id"], doc["session"], doc["seq"]) == ("3f2a9c1e", "b7d1e0aa", 7)
    assert set(doc) == {"v", "type", "id", "session", "seq", *type(body).RULES}
    # encoding is deterministic: a decoded message re-encodes to the same bytes
    if not isinstance(body, Telemetry):  # see test_telemetry_decoded_can_be_reencoded (bug)
        assert encode(decoded) == payload


def test_topic_levels_and_directions():
    assert topic_level(DeviceState) == "state" and DeviceState.DIRECTION is UP
    assert topic_level(EngineState) == "state" and EngineState.DIRECTION is DOWN
    assert topic_level(SAMPLES["playback"]) == "playback"
    ups = {topic_level(c) for c in BODIES if c.DIRECTION is UP}
    downs = {topic_level(c) for c in BODIES if c.DIRECTION is DOWN}
    assert ups == {"hello", "wake", "utterance", "interrupt", "playback", "state", "telemetry", "event"}
    assert downs == {"segment", "control", "state"}


def test_state_level_is_resolved_by_direction():
    device = encode(env(SAMPLES["device_state"]))
    engine = encode(env(SAMPLES["engine_state"]))
    assert isinstance(decode(device, UP, "state").body, DeviceState)
    assert isinstance(decode(engine, DOWN, "state").body, EngineState)
    reject(device, DOWN, "state", "type")
    reject(engine, UP, "state", "type")


def test_encoded_text_is_utf8_not_escaped():
    body = Utterance("u1", True, "naïve café — 안녕하세요", words=None)
    payload = encode(env(body))
    assert "안녕하세요".encode() in payload
    assert decode(payload, UP, "utterance").body.text == "naïve café — 안녕하세요"


def test_ints_are_accepted_for_float_fields_and_come_back_as_floats():
    doc = wire("interrupt")
    doc["onset_ms"] = 250
    got = decode(dumps(doc), UP, "interrupt").body
    assert got.onset_ms == 250.0 and isinstance(got.onset_ms, float)


def test_limits_inclusive_bounds_accepted():
    """Values exactly at the documented limits pass."""
    cases = [
        ("hello", "sample_rate", 8000), ("hello", "sample_rate", 48000),
        ("hello", "software", "x" * 64),
        ("hello", "capabilities", [c.value for c in Capability]),
        ("wake", "score", 0), ("wake", "score", 1),
        ("utterance_final", "text", "x" * 2000),
        ("utterance_final", "utterance_id", "a" * 64),
        ("interrupt", "cursor", {"segment": 1, "sample": 0}),
        ("interrupt", "cursor", {"segment": 5, "sample": 2**31}),
        ("device_state", "held_threads", 0), ("device_state", "held_threads", 64),
        ("telemetry", "cpu_temp_c", -50), ("telemetry", "cpu_temp_c", 150),
        ("telemetry", "interruptions", {"BRANCH": 0, "MODIFY": 1, "CANCEL": 2, "ABSORB": 2**53}),
        ("segment", "samples", 2**31),
        ("segment", "bridge_words", len(SEGMENT_WORDS)),
        ("control", "reason", "r" * 64),
        ("engine_state", "state", "s" * 32),
    ]
    for name, path, value in cases:
        doc = mutate(wire(name), path, value)
        decode(dumps(doc), *where(name))
    decode(dumps(mutate(wire("wake"), "seq", 2**53 - 1)), UP, "wake")
    decode(dumps(mutate(wire("wake"), "id", "A-z_0.9:" * 8)), UP, "wake")


def test_control_carries_a_typed_disposition_of_an_interruption_only():
    """The device reads what the engine applied from `disposition`, never from the free-text reason."""
    for d in (Disposition.BRANCH, Disposition.MODIFY, Disposition.CANCEL):
        got = decode(dumps(mutate(wire("control_branch"), "disposition", d.value)), DOWN, "control").body
        assert got.disposition is d and got.action is Action.FLUSH
    assert decode(dumps(wire("control_flush")), DOWN, "control").body.disposition is None
    for bad in ("NEW", "RESUME", "DROP", "branch", "", 3, True, ["BRANCH"]):
        reject(mutate(wire("control_branch"), "disposition", bad), DOWN, "control", "disposition")
    reject(mutate(wire("control_branch"), "disposition", _DELETE), DOWN, "control", "disposition")
    # the action must fit: ABSORB resumes, the others flush
    reject(mutate(wire("control_branch"), "action", "resume"), DOWN, "control", "disposition")
    reject(mutate(wire("control_absorb"), "action", "flush"), DOWN, "control", "disposition")
    reject(mutate(wire("control_absorb"), "action", "pause"), DOWN, "control", "disposition")


def test_segment_timings_may_end_exactly_at_the_audio_end_and_words_may_touch():
    words = [{"w": "a", "start_ms": 0, "end_ms": 500}, {"w": "b", "start_ms": 500, "end_ms": 1000}]
    doc = mutate(wire("segment"), "words", words)
    doc.update(text="a b", bridge_words=0, sample_rate=16000, samples=16000)  # exactly 1000 ms
    seg = decode(dumps(doc), DOWN, "segment").body
    assert [w.word for w in seg.words] == ["a", "b"]
    # whitespace runs and edges do not create words
    doc["text"] = "  a \t\n b  "
    assert decode(dumps(doc), DOWN, "segment").body.text == "  a \t\n b  "


# --------------------------------------------------------------------------------------------------
# hypothesis round-trip properties

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
ms = st.floats(0, 1e8, allow_nan=False, allow_infinity=False)
cursors = st.builds(Cursor, st.integers(1, 2**32 - 1), st.integers(0, 2**31))
hints = st.sampled_from([None, Hint.CANCEL])
word_text = st.text(min_size=1, max_size=64)
token = st.text(st.characters(blacklist_categories=("Z", "Cc", "Cs")), min_size=1, max_size=16)


@st.composite
def free_words(draw):
    out = []
    for _ in range(draw(st.integers(0, 12))):
        start = draw(ms)
        end = draw(st.floats(start, 1e8, allow_nan=False))
        out.append(WordTiming(draw(word_text), start, end))
    return tuple(out)


@st.composite
def utterances(draw):
    return Utterance(draw(ids), draw(st.booleans()), draw(st.text(max_size=300)),
                     draw(st.none() | free_words()), draw(hints))


interrupts = st.builds(Interrupt, ids, st.none() | cursors, st.floats(0, 1e12, allow_nan=False), hints)
reports = st.builds(PlaybackReport, st.sampled_from(PlaybackEvent), st.none() | cursors,
                    st.floats(0, 1e9, allow_nan=False), st.floats(0, 1e12, allow_nan=False))


@st.composite
def segments(draw):
    tokens = draw(st.lists(token, max_size=30))
    t, words = draw(st.floats(0, 500, allow_nan=False)), []
    for tok in tokens:
        start = t + draw(st.floats(0, 300, allow_nan=False))
        end = start + draw(st.floats(0, 800, allow_nan=False))
        words.append(WordTiming(tok, start, end))
        t = end
    rate = draw(st.integers(8000, 48000))
    needed = math.ceil(t * rate / 1000) if words else 1
    samples = max(1, needed) + draw(st.integers(0, 100_000))
    return Segment(draw(st.integers(1, 2**32 - 1)), draw(ids), draw(ids), " ".join(tokens), tuple(words),
                   draw(st.integers(0, len(words))), rate, samples)


@FAST
@given(body=st.one_of(utterances(), interrupts, reports, segments()), seq=st.integers(0, 2**53 - 1),
       session=ids, msg_id=ids)
def test_round_trip_property(body, seq, session, msg_id):
    original = Envelope(session, seq, msg_id, body)
    payload = encode(original)
    assert len(payload) <= MAX_JSON_BYTES
    decoded = decode(payload, body.DIRECTION, topic_level(body))
    assert decoded == original
    assert encode(decoded) == payload


@FAST
@given(body=st.one_of(utterances(), interrupts, reports, segments()), key=st.text(min_size=1, max_size=20))
def test_any_unknown_top_level_field_is_rejected_by_name(body, key):
    doc = json.loads(encode(env(body)))
    if key in doc:
        return
    doc[key] = 0
    reject(doc, body.DIRECTION, topic_level(body), key)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_garbage_in_any_field_raises_only_protocol_error(name, data):
    doc = wire(name)
    key = data.draw(st.sampled_from(sorted(doc)))
    doc[key] = data.draw(json_values)
    try:
        decode(dumps(doc), *where(name))
    except ProtocolError as exc:
        allowed = {key, ""}
        if doc["type"] == "segment":  # cross-field rules report on words / bridge_words
            allowed |= {"words", "bridge_words"}
        assert exc.field.split(".")[0].split("[")[0] in allowed


# --------------------------------------------------------------------------------------------------
# envelope errors


@pytest.mark.parametrize("value", [2, 0, -1, "1", None, True, [1], {"major": 1}])
def test_wrong_version_is_rejected(value):
    err = reject(mutate(wire("wake"), "v", value), UP, "wake", "v")
    assert "version" in err.reason


def test_missing_version_is_rejected():
    err = reject(mutate(wire("hello"), "v", _DELETE), UP, "hello", "v")
    assert err.reason == "missing"


def test_float_version_is_rejected():
    reject(mutate(wire("wake"), "v", 1.0), UP, "wake", "v")


@pytest.mark.parametrize("key", ["type", "id", "session", "seq"])
def test_missing_envelope_fields(key):
    reject(mutate(wire("control"), key, _DELETE), DOWN, "control", key)


@pytest.mark.parametrize(
    "key,value",
    [
        ("id", ""), ("id", "has space"), ("id", "a" * 65), ("id", "ünï"), ("id", "a/b"), ("id", 5), ("id", None),
        ("session", ""), ("session", "x" * 65), ("session", "s#1"), ("session", ["s"]),
        ("seq", -1), ("seq", 1.0), ("seq", 1.5), ("seq", True), ("seq", False), ("seq", "3"), ("seq", None),
        ("seq", 2**53 + 1),
        ("type", 7), ("type", ""), ("type", None), ("type", "x" * 33),
    ],
)
def test_bad_envelope_values(key, value):
    reject(mutate(wire("wake"), key, value), UP, "wake", key)


def test_seq_of_two_to_the_53_is_rejected():
    reject(mutate(wire("wake"), "seq", 2**53), UP, "wake", "seq")


def test_id_with_trailing_newline_is_rejected():
    reject(mutate(wire("wake"), "id", "abc\n"), UP, "wake", "id")


def test_encode_validates_before_sending():
    with pytest.raises(ProtocolError) as info:
        encode(env(Wake(WakeSource.BUTTON, 1.5)))
    assert info.value.field == "score"
    with pytest.raises(ProtocolError) as info:
        encode(env(SAMPLES["wake"], session="no spaces allowed"))
    assert info.value.field == "session"
    with pytest.raises(ProtocolError) as info:
        encode(env(SAMPLES["wake"], msg_id=""))
    assert info.value.field == "id"
    with pytest.raises(ProtocolError) as info:
        encode(env(SAMPLES["wake"], seq=-1))
    assert info.value.field == "seq"
    with pytest.raises(ProtocolError) as info:
        encode(env(Segment(1, "i", "t", "two words", _timings(["one"]), 0, 16000, 16000)))
    assert info.value.field == "words"


def test_encode_rejects_messages_over_16_kib():
    words = tuple(WordTiming("w" * 30, float(i), float(i)) for i in range(400))
    with pytest.raises(ProtocolError) as info:
        encode(env(Utterance("u", True, "x", words=words)))
    assert info.value.field == "" and str(MAX_JSON_BYTES) in info.value.reason


# --------------------------------------------------------------------------------------------------
# body errors


def _every_body_field():
    for name in sorted(SAMPLES):
        body = SAMPLES[name]
        if name.endswith(("_bare", "_button", "_partial", "_cancel", "_nothing_heard", "_idle", "_muted",
                          "_nulls", "_empty", "_flush")):
            continue
        for key in type(body).RULES:
            yield name, key


@pytest.mark.parametrize("name,key", list(_every_body_field()))
def test_every_body_field_is_required(name, key):
    reject(mutate(wire(name), key, _DELETE), *where(name), key)


@pytest.mark.parametrize("name", ["hello", "wake", "utterance_final", "interrupt", "playback", "device_state",
                                  "telemetry", "segment", "control", "engine_state"])
def test_unknown_top_level_field(name):
    err = reject(mutate(wire(name), "colour", "red"), *where(name), "colour")
    assert err.reason == "unknown field"


@pytest.mark.parametrize(
    "name,path,field",
    [
        ("interrupt", "cursor.extra", "cursor.extra"),
        ("playback", "cursor.sampl", "cursor.sampl"),
        ("utterance_final", "words[1].confidence", "words[1].confidence"),
        ("segment", "words[0].w2", "words[0].w2"),
        ("telemetry", "interruptions.OTHER", "interruptions.OTHER"),
        ("telemetry", "interruptions.branch", "interruptions.branch"),
    ],
)
def test_unknown_nested_field(name, path, field):
    err = reject(mutate(wire(name), path, 1), *where(name), field)
    assert "unknown field" in err.reason


@pytest.mark.parametrize(
    "name,path",
    [
        ("interrupt", "cursor.sample"), ("interrupt", "cursor.segment"), ("playback", "cursor.sample"),
        ("utterance_final", "words[0].w"), ("utterance_final", "words[2].start_ms"),
        ("segment", "words[3].end_ms"),
    ],
)
def test_missing_nested_field(name, path):
    reject(mutate(wire(name), path, _DELETE), *where(name), path)


@pytest.mark.parametrize(
    "name,path,value",
    [
        ("device_state", "held_threads", True),
        ("device_state", "muted", 0),
        ("utterance_final", "final", 1),
        ("engine_state", "held_threads", False),
        ("interrupt", "cursor.sample", True),
        ("interrupt", "cursor.segment", True),
        ("interrupt", "onset_ms", True),
        ("wake", "score", True),
        ("segment", "samples", True),
        ("segment", "bridge_words", False),
        ("hello", "sample_rate", True),
        ("telemetry", "wake_count", True),
        ("telemetry", "interruptions.BRANCH", True),
        ("utterance_final", "words[0].end_ms", True),
    ],
)
def test_bool_is_not_int_and_int_is_not_bool(name, path, value):
    reject(mutate(wire(name), path, value), *where(name), path)


@pytest.mark.parametrize(
    "name,path",
    [
        ("interrupt", "onset_ms"), ("playback", "queued_ms"), ("playback", "stream_ms"), ("wake", "score"),
        ("telemetry", "uptime_s"), ("telemetry", "cpu_temp_c"), ("telemetry", "rtt_ms"),
        ("telemetry", "cursor_lag_ms"), ("utterance_final", "words[1].start_ms"),
        ("segment", "words[0].end_ms"),
    ],
)
@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_non_finite_numbers_are_rejected_by_field(name, path, literal):
    # 1e400 is a valid JSON number that overflows to inf; the number rule names the field
    placeholder = 987654.321
    doc = mutate(wire(name), path, placeholder)
    payload = dumps(doc).replace(b"987654.321", literal.encode())
    reject(payload, *where(name), path)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_rejected(literal):
    payload = dumps(mutate(wire("interrupt"), "onset_ms", 987654.321)).replace(b"987654.321", literal)
    err = reject(payload, UP, "interrupt", "")
    assert literal.lstrip(b"-").decode() in err.reason


@pytest.mark.parametrize(
    "name,path,value",
    [
        ("hello", "sample_rate", 7999), ("hello", "sample_rate", 48001), ("hello", "sample_rate", 0),
        ("wake", "score", -0.01), ("wake", "score", 1.0001),
        ("interrupt", "onset_ms", -0.5), ("interrupt", "onset_ms", 1.1e12),
        ("interrupt", "cursor.segment", 0), ("interrupt", "cursor.segment", -3),
        ("interrupt", "cursor.segment", 2**32),
        ("interrupt", "cursor.sample", -1), ("interrupt", "cursor.sample", 2**31 + 1),
        ("playback", "queued_ms", -1), ("playback", "queued_ms", 1.5e9), ("playback", "stream_ms", -0.001),
        ("device_state", "held_threads", 65), ("device_state", "held_threads", -1),
        ("telemetry", "uptime_s", -1), ("telemetry", "cpu_temp_c", -50.5), ("telemetry", "cpu_temp_c", 150.1),
        ("telemetry", "wake_count", -1), ("telemetry", "interruptions.CANCEL", -2),
        ("telemetry", "rtt_ms", -3.0), ("telemetry", "cursor_lag_ms", -0.1),
        ("utterance_final", "words[0].start_ms", -1), ("utterance_final", "words[0].end_ms", 1e9),
        ("segment", "segment", 0), ("segment", "samples", 0), ("segment", "samples", 2**31 + 1),
        ("segment", "sample_rate", 7999), ("segment", "bridge_words", -1),
        ("engine_state", "held_threads", 65),
    ],
)
def test_out_of_range_values(name, path, value):
    err = reject(mutate(wire(name), path, value), *where(name), path)
    assert "between" in err.reason


@pytest.mark.parametrize(
    "name,path,value",
    [
        ("hello", "sample_rate", 16000.0), ("hello", "sample_rate", "16000"),
        ("hello", "capabilities", "wake"), ("hello", "software", 4),
        ("utterance_final", "text", None), ("utterance_final", "words", {"w": "a"}),
        ("utterance_final", "words[0]", "hello"), ("utterance_final", "words[0].w", 3),
        ("interrupt", "cursor", [17, 24000]), ("interrupt", "cursor", 17), ("interrupt", "onset_ms", "1"),
        ("playback", "cursor.sample", 1.0), ("telemetry", "interruptions", [1]),
        ("telemetry", "interruptions.ABSORB", 1.5), ("segment", "words", None),
        ("control", "reason", None), ("engine_state", "state", None),
    ],
)
def test_wrong_json_types(name, path, value):
    reject(mutate(wire(name), path, value), *where(name), path)


@pytest.mark.parametrize(
    "name,path,value",
    [
        ("wake", "source", "voice"), ("wake", "source", "WAKE_WORD"), ("wake", "source", None),
        ("utterance_final", "hint", "stop"), ("interrupt", "hint", "CANCEL"), ("interrupt", "hint", ""),
        ("playback", "event", "playing"), ("playback", "event", 1),
        ("device_state", "state", "sleeping"), ("device_state", "state", "Idle"),
        ("control", "action", "stop"), ("control", "action", "Pause"),
        ("hello", "capabilities[1]", "camera"), ("hello", "capabilities[0]", None),
    ],
)
def test_bad_enum_values(name, path, value):
    err = reject(mutate(wire(name), path, value), *where(name), path)
    assert "one of" in err.reason


def test_capability_list_rules():
    reject(mutate(wire("hello"), "capabilities", ["wake", "asr", "wake"]), UP, "hello", "capabilities")
    err = reject(mutate(wire("hello"), "capabilities", ["wake"] * 17), UP, "hello", "capabilities")
    assert "16" in err.reason


@pytest.mark.parametrize(
    "name,path,value",
    [
        ("utterance_final", "utterance_id", "utt 1"), ("utterance_final", "utterance_id", ""),
        ("interrupt", "utterance_id", "a" * 65), ("interrupt", "utterance_id", "ünicode"),
        ("segment", "item", "item/42"), ("segment", "thread", "thread#1"), ("segment", "thread", 42),
    ],
)
def test_bad_id_patterns(name, path, value):
    reject(mutate(wire(name), path, value), *where(name), path)


@pytest.mark.parametrize(
    "name,path,value",
    [
        ("utterance_final", "text", "x" * 2001), ("segment", "text", "é" * 2001),
        ("hello", "software", "v" * 65), ("control", "reason", "r" * 65),
        ("utterance_final", "words[0].w", "w" * 65), ("utterance_final", "words[0].w", ""),
        ("engine_state", "state", ""), ("engine_state", "state", "s" * 33),
    ],
)
def test_text_length_limits(name, path, value):
    err = reject(mutate(wire(name), path, value), *where(name), path)
    assert "length" in err.reason or "{1,32}" in err.reason  # engine states: a lower-case pattern


def _compact_words(n: int) -> list[dict[str, Any]]:
    return [{"w": "a", "start_ms": i, "end_ms": i} for i in range(n)]


def test_word_count_limit_utterance():
    doc = mutate(wire("utterance_final"), "words", _compact_words(400))
    assert len(decode(dumps(doc), UP, "utterance").body.words) == 400
    doc = mutate(wire("utterance_final"), "words", _compact_words(401))
    assert len(dumps(doc)) <= MAX_JSON_BYTES  # so it is the word rule, not the size, that rejects
    err = reject(doc, UP, "utterance", "words")
    assert "400" in err.reason


def test_word_count_limit_segment():
    doc = wire("segment")
    doc.update(text=" ".join(["a"] * 400), words=_compact_words(400), bridge_words=0)
    assert len(decode(dumps(doc), DOWN, "segment").body.words) == 400
    doc.update(text=" ".join(["a"] * 401), words=_compact_words(401))
    assert len(dumps(doc)) <= MAX_JSON_BYTES
    reject(doc, DOWN, "segment", "words")


@pytest.mark.parametrize("name", ["utterance_final", "segment"])
def test_word_end_before_start(name):
    doc = wire(name)
    start = doc["words"][1]["start_ms"]
    doc = mutate(doc, "words[1].end_ms", start - 0.5)
    err = reject(doc, *where(name), "words[1].end_ms")
    assert "start_ms" in err.reason


def test_zero_length_word_is_fine():
    doc = mutate(wire("utterance_final"), "words[1].end_ms", wire("utterance_final")["words"][1]["start_ms"])
    decode(dumps(doc), UP, "utterance")


def test_overlapping_words_in_segment():
    doc = wire("segment")
    prev_end = doc["words"][1]["end_ms"]
    err = reject(mutate(doc, "words[2].start_ms", prev_end - 1), DOWN, "segment", "words[2].start_ms")
    assert "overlap" in err.reason


def test_out_of_order_words_in_segment():
    doc = wire("segment")
    doc["words"][3], doc["words"][4] = doc["words"][4], doc["words"][3]
    reject(doc, DOWN, "segment", "words[4].start_ms")


def test_utterance_words_need_not_be_ordered():
    """Only segments carry ordered, non-overlapping timings; utterance words are the ASR's, as given."""
    doc = wire("utterance_final")
    doc["words"][0], doc["words"][1] = doc["words"][1], doc["words"][0]
    decode(dumps(doc), UP, "utterance")


@pytest.mark.parametrize("text", ["Right, as I was saying", SEGMENT_TEXT + " extra", "", "   "])
def test_segment_words_must_match_text(text):
    err = reject(mutate(wire("segment"), "text", text), DOWN, "segment", "words")
    assert "whitespace" in err.reason


def test_bridge_words_cannot_exceed_words():
    err = reject(mutate(wire("segment"), "bridge_words", len(SEGMENT_WORDS) + 1), DOWN, "segment", "bridge_words")
    assert "exceed" in err.reason


def test_segment_timings_must_fit_the_audio():
    doc = wire("segment")  # last word ends at 2180 ms
    doc.update(sample_rate=24000, samples=24000 * 2180 // 1000)  # exactly 2180 ms: fine
    decode(dumps(doc), DOWN, "segment")
    doc["samples"] = 24000 * 2  # 2000 ms of audio: words run 180 ms past it
    err = reject(doc, DOWN, "segment", "words")
    assert "past" in err.reason
    doc.update(samples=24000 * 2180 // 1000, sample_rate=48000)  # same samples, twice the rate: 1090 ms
    reject(doc, DOWN, "segment", "words")


# --------------------------------------------------------------------------------------------------
# type, topic and payload-level errors


def test_type_must_match_topic_level():
    payload = encode(env(SAMPLES["wake"]))
    err = reject(payload, UP, "hello", "type")
    assert "'wake'" in err.reason
    reject(encode(env(SAMPLES["interrupt"])), UP, "utterance", "type")
    reject(encode(env(SAMPLES["control"])), DOWN, "segment", "type")


@pytest.mark.parametrize(
    "direction,level", [(DOWN, "hello"), (UP, "segment"), (DOWN, "audio"), (UP, "status"), (UP, "nonsense")]
)
def test_level_without_json_messages(direction, level):
    reject(encode(env(SAMPLES["hello"])), direction, level, "topic")


def test_unknown_type():
    doc = mutate(wire("wake"), "type", "teleport")
    with pytest.raises(ProtocolError) as info:
        envelope_module.decode(dumps(doc), REGISTRY)
    assert info.value.field == "type" and "unknown" in info.value.reason
    # on a topic, an unknown type is a mismatch with the topic's type
    reject(doc, UP, "wake", "type")


def test_untyped_decode_dispatches_on_type():
    for name, body in SAMPLES.items():
        assert envelope_module.decode(encode(env(body)), REGISTRY).body == body, name


def test_payload_at_16_kib_is_accepted_and_one_more_byte_is_not():
    payload = encode(env(SAMPLES["segment"]))
    exact = payload + b" " * (MAX_JSON_BYTES - len(payload))
    assert len(exact) == MAX_JSON_BYTES
    assert decode(exact, DOWN, "segment").body == SAMPLES["segment"]
    err = reject(exact + b" ", DOWN, "segment", "")
    assert str(MAX_JSON_BYTES + 1) in err.reason


def test_oversized_payload_is_rejected_before_parsing(monkeypatch):
    def explode(*args, **kwargs):
        raise AssertionError("json.loads must not run on an oversized payload")

    monkeypatch.setattr(envelope_module.json, "loads", explode)
    reject(b"{" + b"x" * MAX_JSON_BYTES, UP, "hello", "")
    reject(b"\xff" * (MAX_JSON_BYTES + 1), UP, "hello", "")


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe{}", b'{"v":1,"type":"wake","id":"a\xc3","session":"s","seq":0}', b"\xed\xa0\x80"],
)
def test_non_utf8_is_rejected(payload):
    err = reject(payload, UP, "wake", "")
    assert "UTF-8" in err.reason


@pytest.mark.parametrize("payload", [b"[]", b"[1,2]", b"1", b"null", b'"wake"', b"true", b"1.5"])
def test_non_object_json_is_rejected(payload):
    err = reject(payload, UP, "wake", "")
    assert "object" in err.reason


@pytest.mark.parametrize("payload", [b"", b"{", b"{'v':1}", b'{"v":1,}', b"v=1", b'{"v":1}{"v":1}'])
def test_malformed_json_is_rejected(payload):
    reject(payload, UP, "wake", "")


def test_huge_integer_in_float_field_is_a_protocol_error():
    payload = dumps(mutate(wire("wake"), "score", 0.5)).replace(b"0.5", b"1" + b"0" * 400)
    reject(payload, UP, "wake", "score")


def test_int_literal_over_4300_digits_is_a_protocol_error():
    payload = dumps(mutate(wire("wake"), "seq", 0)).replace(b'"seq":0', b'"seq":' + b"9" * 5000)
    assert len(payload) <= MAX_JSON_BYTES
    reject(payload, UP, "wake", "")


def test_deeply_nested_json_is_a_protocol_error():
    payload = b"[" * 8000 + b"]" * 8000
    assert len(payload) <= MAX_JSON_BYTES
    reject(payload, UP, "wake", "")


def test_lone_surrogate_is_rejected_or_reencodable():
    payload = dumps(wire("control")).replace(b'"reason":"BRANCH"', b'"reason":"\\ud800"')
    try:
        decoded = decode(payload, DOWN, "control")
    except ProtocolError:
        return
    encode(decoded)


def test_default_telemetry_can_be_encoded():
    decoded = decode(encode(env(Telemetry(uptime_s=12.0))), UP, "telemetry")
    assert decoded.body.interruptions == {}


def test_telemetry_decoded_can_be_reencoded():
    payload = encode(env(SAMPLES["telemetry"]))
    assert encode(decode(payload, UP, "telemetry")) == payload


def test_decoded_telemetry_is_immutable():
    body = decode(encode(env(SAMPLES["telemetry"])), UP, "telemetry").body
    assert body.interruptions == {"BRANCH": 3, "CANCEL": 1}
    with pytest.raises(TypeError):
        body.interruptions["BRANCH"] = 0  # type: ignore[index]


# --------------------------------------------------------------------------------------------------
# audio frames


def pcm_bytes(n_samples: int) -> bytes:
    pattern = bytes((i * 37) % 256 for i in range(256))
    return (pattern * (n_samples * 2 // 256 + 1))[: n_samples * 2]


def test_audio_frame_round_trip_and_layout():
    pcm = pcm_bytes(480)
    frame = AudioFrame(17, 48000, pcm, last=True)
    data = frame.encode()
    assert len(data) == 16 + 960
    assert data[:3] == b"SGA" and data[3] == 1
    assert int.from_bytes(data[4:8], "little") == 17
    assert int.from_bytes(data[8:12], "little") == 48000
    assert int.from_bytes(data[12:14], "little") == 1
    assert data[14:16] == b"\0\0"
    assert data[16:] == pcm
    back = AudioFrame.decode(data)
    assert back == frame and back.samples == 480
    not_last = AudioFrame(2**32 - 1, 2**32 - 1, b"\x01\x02")
    assert AudioFrame.decode(not_last.encode()) == not_last
    assert not_last.encode()[12:14] == b"\0\0"


def test_audio_decode_accepts_memoryview_and_copies():
    data = bytearray(AudioFrame(3, 0, b"\x10\x20\x30\x40").encode())
    frame = AudioFrame.decode(memoryview(data))
    data[16] = 0
    assert frame.pcm == b"\x10\x20\x30\x40" and isinstance(frame.pcm, bytes)


def _frame(magic=b"SGA", version=1, segment=5, offset=0, flags=0, reserved=0, pcm=b"\0\0") -> bytes:
    return struct.pack("<3sBIIHH", magic, version, segment, offset, flags, reserved) + pcm


@pytest.mark.parametrize(
    "payload,field",
    [
        (_frame(magic=b"SGB"), "magic"), (_frame(magic=b"sga"), "magic"), (b"RIFF" + b"\0" * 20, "magic"),
        (_frame(version=0), "version"), (_frame(version=2), "version"),
        (_frame(segment=0), "segment"),
        (_frame(flags=2), "flags"), (_frame(flags=3), "flags"), (_frame(flags=0x8000), "flags"),
        (_frame(reserved=1), "reserved"), (_frame(reserved=0x100), "reserved"),
        (_frame(pcm=b"\0"), "pcm"), (_frame(pcm=b"\0" * 101), "pcm"),
        (_frame(pcm=b""), "pcm"), (_frame(pcm=b"\0" * 65538), "pcm"),
        (b"", "header"), (b"SGA\x01", "header"), (_frame()[:15], "header"),
    ],
)
def test_bad_audio_frames(payload, field):
    with pytest.raises(ProtocolError) as info:
        AudioFrame.decode(payload)
    assert info.value.field == field


def test_audio_pcm_limit_is_inclusive():
    assert AudioFrame.decode(_frame(pcm=b"\1\0" * 32768)).samples == 32768


@pytest.mark.parametrize(
    "frame,field",
    [
        (AudioFrame(0, 0, b"\0\0"), "segment"), (AudioFrame(2**32, 0, b"\0\0"), "segment"),
        (AudioFrame(-1, 0, b"\0\0"), "segment"),
        (AudioFrame(1, -1, b"\0\0"), "offset"), (AudioFrame(1, 2**32, b"\0\0"), "offset"),
        (AudioFrame(1, 0, b""), "pcm"), (AudioFrame(1, 0, b"\0"), "pcm"),
        (AudioFrame(1, 0, b"\0" * 65538), "pcm"),
    ],
)
def test_audio_encode_validates(frame, field):
    with pytest.raises(ProtocolError) as info:
        frame.encode()
    assert info.value.field == field


def _check_split(segment: int, pcm: bytes, max_bytes: int, frames: list[AudioFrame]) -> None:
    assert frames, "a non-empty segment gives at least one frame"
    expected_offset = 0
    for i, frame in enumerate(frames):
        assert frame.segment == segment
        assert frame.offset == expected_offset
        assert len(frame.pcm) <= max_bytes - max_bytes % 2
        assert frame.last == (i == len(frames) - 1)
        assert AudioFrame.decode(frame.encode()) == frame
        expected_offset += frame.samples
    assert b"".join(f.pcm for f in frames) == pcm
    assert expected_offset * 2 == len(pcm)


@pytest.mark.parametrize(
    "n_bytes,max_bytes,count",
    [(2, 32000, 1), (32000, 32000, 1), (32002, 32000, 2), (64000, 32000, 2), (64002, 32000, 3),
     (10, 4, 3), (10, 5, 3), (12, 3, 6), (96000, 65536, 2)],
)
def test_split_pcm_covers_segment_exactly(n_bytes, max_bytes, count):
    pcm = pcm_bytes(n_bytes // 2)
    frames = split_pcm(9, pcm, max_bytes)
    assert len(frames) == count
    _check_split(9, pcm, max_bytes, frames)


def test_split_pcm_default_frame_size():
    pcm = pcm_bytes(24000 * 3)  # 3 s at 24 kHz: 144000 bytes, 32000-byte frames
    frames = split_pcm(4, pcm)
    assert [f.offset for f in frames] == [0, 16000, 32000, 48000, 64000]
    assert [f.last for f in frames] == [False, False, False, False, True]
    assert frames[-1].samples == 8000


@FAST
@given(n_samples=st.integers(1, 20000), max_bytes=st.integers(2, 65536), segment=st.integers(1, 2**32 - 1))
def test_split_pcm_property(n_samples, max_bytes, segment):
    pcm = pcm_bytes(n_samples)
    frames = split_pcm(segment, pcm, max_bytes)
    _check_split(segment, pcm, max_bytes, frames)
    assert len(frames) == math.ceil(len(pcm) / (max_bytes - max_bytes % 2))


# --------------------------------------------------------------------------------------------------
# topics


def test_topic_builders_and_parse():
    t = Topics()
    assert t.root == "segue"
    assert t.up("kitchen-1", "hello") == "segue/kitchen-1/up/hello"
    assert t.down("kitchen-1", "audio") == "segue/kitchen-1/down/audio"
    assert t.status("kitchen-1") == "segue/kitchen-1/status"
    assert t.device_subscription("kitchen-1") == "segue/kitchen-1/down/#"
    assert t.parse("segue/kitchen-1/up/hello") == Topic("kitchen-1", UP, "hello")
    assert t.parse("segue/kitchen-1/down/audio") == Topic("kitchen-1", DOWN, "audio")
    assert t.parse("segue/kitchen-1/up/state") == Topic("kitchen-1", UP, "state")
    assert t.parse("segue/kitchen-1/status") == Topic("kitchen-1", None, "status")
    assert t.parse("segue/0/up/wake").device_id == "0"


@pytest.mark.parametrize("root", ["segue", "acme/home", "a-b_c", "x/y/z"])
def test_parse_inverts_builders_for_any_root(root):
    t = Topics(root)
    for level in ("hello", "utterance", "playback", "state", "telemetry"):
        assert t.parse(t.up("dev_7", level)) == Topic("dev_7", UP, level)
    for level in ("segment", "audio", "control", "state"):
        assert t.parse(t.down("dev_7", level)) == Topic("dev_7", DOWN, level)
    assert t.parse(t.status("dev_7")) == Topic("dev_7", None, "status")


@pytest.mark.parametrize(
    "device_id",
    ["Kitchen", "-dev", "_dev", "", "a" * 64, "dev.1", "dev 1", "dev+", "+", "#", "dév", "dev:1"],
)
def test_invalid_device_ids(device_id):
    with pytest.raises(ProtocolError) as info:
        Topics().parse(f"segue/{device_id}/up/hello")
    assert info.value.field == "topic" and "device id" in info.value.reason


def test_longest_device_id_is_valid():
    assert Topics().parse("segue/" + "a" * 63 + "/status").device_id == "a" * 63


def test_device_id_with_trailing_newline_is_invalid():
    with pytest.raises(ProtocolError):
        Topics().parse("segue/dev1\n/up/hello")


@pytest.mark.parametrize(
    "topic",
    ["other/dev/up/hello", "Segue/dev/up/hello", "segueX/dev/up/hello", "$share/g/segue/dev/up/hello",
     "/segue/dev/up/hello", "dev/up/hello"],
)
def test_wrong_root(topic):
    with pytest.raises(ProtocolError) as info:
        Topics().parse(topic)
    assert info.value.field == "topic" and "root" in info.value.reason


def test_multi_level_root_must_match_every_level():
    with pytest.raises(ProtocolError):
        Topics("acme/home").parse("acme/work/dev/up/hello")
    with pytest.raises(ProtocolError):
        Topics("acme/home").parse("acme/dev/up/hello")


@pytest.mark.parametrize(
    "topic",
    ["segue", "segue/dev", "segue/dev/up", "segue/dev/up/", "segue/dev/sideways/hello", "segue/dev/UP/hello",
     "segue/dev/up/hello/extra", "segue/dev/status/extra", "segue/dev/down", "segue/dev//hello",
     "segue/dev/statuses"],
)
def test_wrong_shape(topic):
    with pytest.raises(ProtocolError) as info:
        Topics().parse(topic)
    assert info.value.field == "topic"


@pytest.mark.parametrize("root", ["", "+", "#", "a/+/b", "segue/#", "$SYS", "$share", "se#gue"])
def test_root_validation(root):
    with pytest.raises(ValueError):
        Topics(root)


def _mqtt_match(filter_: str, topic: str) -> bool:
    """MQTT topic filter matching (+ one level, # the rest), enough to check the subscriptions."""
    f, t = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def test_engine_shared_subscriptions():
    t = Topics("acme")
    subs = t.engine_subscriptions("workers")
    assert subs == ["$share/workers/acme/+/up/#", "$share/workers/acme/+/status"]
    filters = [s.split("/", 2)[2] for s in subs]  # strip $share/<group>/
    assert all(s.startswith("$share/workers/") for s in subs)
    covered = [t.up("d1", lvl) for lvl in ("hello", "utterance", "state", "telemetry")] + [t.status("d2")]
    for topic in covered:
        assert any(_mqtt_match(f, topic) for f in filters), topic
    for topic in (t.down("d1", "segment"), t.down("d1", "audio"), "segue/d1/up/hello", "acme/d1/status/x"):
        assert not any(_mqtt_match(f, topic) for f in filters), topic


def test_device_subscription_is_least_privilege():
    t = Topics()
    sub = t.device_subscription("d1")
    for level in ("segment", "audio", "control", "state"):
        assert _mqtt_match(sub, t.down("d1", level))
    assert not _mqtt_match(sub, t.down("d2", "audio"))
    assert not _mqtt_match(sub, t.up("d1", "hello"))
    assert not _mqtt_match(sub, t.status("d1"))


# --------------------------------------------------------------------------------------------------
# sequencing


def test_a_fresh_tracker_adopts_the_first_session_it_sees():
    """After the receiver restarts it has no record: it adopts the peer's session, then is strict."""
    tr = SequenceTracker()
    v = tr.check("s1", 5)
    assert v.accepted and v.adopted and not v.new_session and tr.session == "s1" and tr.last_seq == 5
    assert not tr.check("s1", 5).accepted
    late = tr.check("s0", 9)
    assert not late.accepted and "unknown session" in late.reason
    v = tr.check("s2", 0, starts_session=True)
    assert v.accepted and v.new_session and tr.session == "s2"


def test_duplicates_and_older_seqs_are_rejected_and_gaps_accepted():
    tr = SequenceTracker()
    assert tr.check("s1", 5, starts_session=True).accepted
    v = tr.check("s1", 6)
    assert v.accepted and not v.new_session
    dup = tr.check("s1", 6)
    assert not dup.accepted and "6" in dup.reason
    assert not tr.check("s1", 5).accepted  # the hello's own seq is taken too
    assert not tr.check("s1", 0).accepted
    assert tr.check("s1", 100).accepted  # a gap (lost QoS 0 heartbeats) is fine
    assert not tr.check("s1", 99).accepted  # reordered: older than the newest accepted
    assert tr.last_seq == 100
    assert tr.check("s1", 2**53 - 1).accepted


def test_rejection_changes_nothing():
    tr = SequenceTracker()
    tr.check("s1", 3, starts_session=True)
    tr.check("s1", 10)
    tr.check("s1", 4)
    tr.check("s2", 50)  # unknown session, not a hello
    assert (tr.session, tr.last_seq) == ("s1", 10)
    assert tr.check("s1", 11).accepted


def test_hello_starts_a_new_session_and_old_one_is_dead():
    tr = SequenceTracker()
    tr.check("s1", 0, starts_session=True)
    tr.check("s1", 40)
    v = tr.check("s2", 0, starts_session=True)  # device restarted: seq starts over
    assert v.accepted and v.new_session
    assert (tr.session, tr.last_seq) == ("s2", 0)
    assert tr.check("s2", 1).accepted
    late = tr.check("s1", 41)  # a stale message of the old session
    assert not late.accepted and "unknown session" in late.reason


def test_replayed_hello_of_a_retired_session_is_rejected():
    tr = SequenceTracker()
    tr.check("s1", 0, starts_session=True)
    tr.check("s2", 0, starts_session=True)
    v = tr.check("s1", 0, starts_session=True)
    assert not v.accepted and "retired" in v.reason
    assert not tr.check("s1", 999, starts_session=True).accepted
    assert tr.session == "s2"


def test_hello_within_current_session_is_sequenced():
    tr = SequenceTracker()
    tr.check("s1", 0, starts_session=True)
    tr.check("s1", 3)
    again = tr.check("s1", 3, starts_session=True)  # redelivered hello
    assert not again.accepted
    reconnect = tr.check("s1", 4, starts_session=True)  # reconnect without restart: same session
    assert reconnect.accepted and not reconnect.new_session


def test_many_retired_sessions_stay_rejected():
    tr = SequenceTracker()
    for i in range(20):
        assert tr.check(f"s{i}", 0, starts_session=True).accepted
    for i in range(19):
        assert not tr.check(f"s{i}", 1000, starts_session=True).accepted
    assert tr.session == "s19"


@FAST
@given(st.lists(st.integers(0, 50), max_size=60))
def test_sequence_property_accepts_exactly_the_new_maxima(seqs):
    tr = SequenceTracker()
    tr.check("s", -1, starts_session=True)
    high = -1
    for seq in seqs:
        v = tr.check("s", seq)
        assert v.accepted == (seq > high)
        high = max(high, seq)
    assert tr.last_seq == high


@pytest.mark.parametrize("field,value", [("false_pauses", -1), ("false_pauses", 1.5), ("false_pauses", "3"),
                                         ("false_pause_ms", -0.1), ("false_pause_ms", "x")])
def test_telemetry_false_pause_counts_are_validated(field, value):
    doc = json.loads(encode(env(Telemetry(uptime_s=1.0, false_pauses=2, false_pause_ms=120.0))))
    doc[field] = value
    err = reject(doc, UP, "telemetry", field)
    assert field in str(err)


def test_telemetry_false_pause_counts_round_trip():
    body = decode(encode(env(Telemetry(uptime_s=1.0, false_pauses=2, false_pause_ms=120.0))), UP, "telemetry").body
    assert (body.false_pauses, body.false_pause_ms) == (2, 120.0)
