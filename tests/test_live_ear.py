"""Live mode's ear and verdict pieces on synthetic recordings (fast; no sound server, no processes).

The ear index must recover, sample-exactly, which segment sample reached the ear from a recording
alone, through the things a real card does: a soft onset, dropouts (silence inserted, the segment
going on after it), a pause and a resume from the same sample, a flush to a new segment in the
middle of a buffer, and quiet dither that recurs all over a segment.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import openai

from evaluation.live.ear import LiveEarIndex
from evaluation.live.llmproxy import RecordingProxy
from evaluation.live.transcript import locate
from evaluation.openai_server import ScriptedLLMServer

SR = 16000


def _speech(n: int, seed: int) -> np.ndarray:
    """Speech-like PCM: noise bursts with a quiet dither pattern between them (as espeak's pauses)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3000).astype(np.int16)
    for start in range(0, n, 4000):
        x[start : start + 600] = np.tile(np.array([-4, 4], dtype=np.int16), 300)[: len(x[start : start + 600])]
    x[:200] = (np.arange(200) % 7 - 3).astype(np.int16)  # a soft onset below the search threshold
    return x


def test_ear_index_recovers_the_played_timeline() -> None:
    s1, s2 = _speech(24000, 1), _speech(16000, 2)
    silence = lambda n: np.zeros(n, dtype=np.int16)  # noqa: E731
    # 0.5 s silence; s1[0:8000]; 90 ms dropout; s1[8000:12000]; pause 0.4 s; resume s1[12000:20005];
    # flush mid-buffer straight into s2 (whole); 0.3 s silence
    ear = np.concatenate([silence(8000), s1[:8000], silence(1440), s1[8000:12000], silence(6400),
                          s1[12000:20005], s2, silence(4800)])
    idx = LiveEarIndex(SR)
    for end in range(0, len(ear) + 1, 800):  # grows as a recording does
        idx.update(ear[:end], {1: s1, 2: s2})
    idx.update(ear, {1: s1, 2: s2})
    spans = idx.spans()
    assert [(round(s * SR), seg, first) for s, _, seg, first in spans] == [
        (8000, 1, 0), (17440, 1, 8000), (27840, 1, 12000), (35845, 2, 0)]
    assert idx.unmatched_samples == 0
    t_end_s1 = 35845 / SR
    # s1[20000:20005] is quiet dither: a quiet tail with no sound after it is not credited (it would
    # match the next segment's quiet onset as well)
    assert idx.heard_samples(1, t_end_s1) == 20000
    assert idx.heard_samples(1, 17440 / SR) == 8000  # during the dropout nothing more was heard
    assert idx.heard_samples(2, np.inf) == 16000
    assert idx.first_heard(2) == 35845 / SR
    assert idx.last_heard(27000 / SR) == (1, 12000)  # paused at sample 12000
    assert abs(idx.last_agent_time(27000 / SR) - (21439 / SR)) < 1e-9
    gaps = idx.agent_gaps(0.6, 35845 / SR, min_gap_s=0.05)
    assert [(round(a * SR), round(b * SR)) for a, b in gaps] == [(16000, 17440), (21440, 27840)]


def test_ear_index_ignores_sound_that_is_not_the_agent() -> None:
    s1 = _speech(8000, 3)
    other = (np.random.default_rng(9).standard_normal(4000) * 3000).astype(np.int16)
    ear = np.concatenate([other, s1, np.zeros(1600, dtype=np.int16)])
    idx = LiveEarIndex(SR)
    idx.update(ear, {1: s1})
    assert [(round(s * SR), seg, first) for s, _, seg, first in idx.spans()] == [(4000, 1, 0)]
    assert idx.unmatched_samples >= 3000  # counted, so a resampling stage in between would show


def test_locate_finds_the_users_voice_under_echo() -> None:
    rng = np.random.default_rng(4)
    voice = np.concatenate([np.zeros(800), rng.standard_normal(12000) * 5000, np.zeros(800)]).astype(np.int16)
    mic = (rng.standard_normal(5 * SR) * 800).astype(np.int16)  # echo and noise
    at = int(2.3 * SR)
    mic[at : at + len(voice)] = np.clip(mic[at : at + len(voice)].astype(int) + voice, -32768, 32767)
    found = locate(mic, voice, SR, mic_offset=0.25, expected=2.0)
    assert found is not None and found.score > 0.9
    assert abs(found.start - (0.25 + (at + 800) / SR)) < 0.011
    assert abs(found.end - (0.25 + (at + 12800) / SR)) < 0.011


def test_locate_finds_the_start_when_the_player_stalled_mid_utterance() -> None:
    """The user's player stalled 190 ms after its first 220 ms of voice (seen in a live run): the
    whole-utterance match aligns with the longer second piece, but the start is where the voice began."""
    rng = np.random.default_rng(5)
    voice = np.concatenate([np.zeros(800), rng.standard_normal(3520) * 5000, np.zeros(7680),
                            rng.standard_normal(16000) * 5000, np.zeros(800)]).astype(np.int16)
    stall = int(0.19 * SR)
    split = 800 + 3520 + 2000
    heard = np.concatenate([voice[:split], np.zeros(stall, dtype=np.int16), voice[split:]])
    mic = (rng.standard_normal(6 * SR) * 800).astype(np.int16)
    at = int(2.3 * SR)
    mic[at : at + len(heard)] = np.clip(mic[at : at + len(heard)].astype(int) + heard, -32768, 32767)
    found = locate(mic, voice, SR, mic_offset=0.25, expected=2.0)
    assert found is not None
    assert abs(found.start - (0.25 + (at + 800) / SR)) < 0.011, found  # not 190 ms late
    assert abs(found.end - (0.25 + (at + stall + len(voice) - 800) / SR)) < 0.011, found


def test_recording_proxy_passes_a_stream_through_and_records_it() -> None:
    with ScriptedLLMServer([{"match": "hello", "reply": "Hello there, how are you today?"}]) as upstream:
        proxy = RecordingProxy(upstream.base_url).start()
        try:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x")
            stream = client.chat.completions.create(model="scripted", stream=True,
                                                    messages=[{"role": "user", "content": "hello"}])
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            plain = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hello"}])
        finally:
            proxy.stop()
        upstream.wait_for(lambda s: len(s.requests) == 2 and all(r.completed for r in s.requests))
    assert text == "Hello there, how are you today?"
    assert plain.choices[0].message.content == text
    recorded = proxy.requests
    assert [r.reply for r in recorded] == [text, text]
    assert recorded[0].messages == [{"role": "user", "content": "hello"}]
    assert recorded[0].stream and not recorded[1].stream
    json.dumps([r.messages for r in recorded])  # what requests.jsonl writes
    assert threading.active_count() >= 1
