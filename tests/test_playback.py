"""Playback's heard cursor against the virtual card's ear tap (ground truth)."""

import numpy as np
import pytest

from device.audio import VirtualCard, VirtualCardSettings
from device.playback import (ChunkResult, Cursor, Idle, Playback, PlaybackSettings, SegmentEnded, SegmentInfo,
                             SegmentsDropped, SegmentStarted)

SR = 16000


def _rig(**card_kw):
    card = VirtualCard(VirtualCardSettings(**card_kw))
    pb = Playback(PlaybackSettings(sample_rate=SR))
    card.start(lambda mic, frames, times: pb.render(frames, times.output_dac_time))
    return card, pb


def _pcm(n, seed):
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


def _add(pb, seg, pcm, chunk=4000):
    pb.add_segment(SegmentInfo(seg, len(pcm)))
    for off in range(0, len(pcm), chunk):
        assert pb.add_audio(seg, off, pcm[off : off + chunk], last=off + chunk >= len(pcm)) == ChunkResult.ACCEPTED


@pytest.mark.parametrize("latency_ms,jitter_ms,buffer_ms", [(100, 0, 20), (120, 3, 20), (80, 7, 10), (0, 0, 5)])
def test_cursor_at_pause_equals_ear_and_resume_is_contiguous(latency_ms, jitter_ms, buffer_ms):
    card, pb = _rig(output_latency_ms=latency_ms, jitter_ms=jitter_ms, buffer_ms=buffer_ms, seed=5)
    a, b = _pcm(40000, 1), _pcm(24000, 2)
    _add(pb, 1, a)
    _add(pb, 2, b)
    card.run(1.337)
    cur = pb.pause()
    card.run(0.6)  # everything handed over has now played
    assert cur == Cursor(1, card.ear.heard(1)) == card.ear.last_heard()
    assert pb.cursor_at(card.time()) == cur
    card.run(0.3)
    assert card.ear.heard(1) == cur.sample  # nothing more played while paused
    pb.resume()
    card.run(1.0)
    pause2 = pb.pause()
    card.run(0.5)
    assert pause2 == card.ear.last_heard()
    pb.resume()
    card.run(3.0)
    # the ear heard each segment once, in order, with nothing skipped or repeated
    assert card.ear.sequence(1) == [(0, 40000)]
    assert card.ear.sequence(2) == [(0, 24000)]
    heard = np.concatenate([card.ear.pcm[s.ear_sample : s.ear_sample + s.count] for s in card.ear.spans])
    assert np.array_equal(heard, np.concatenate([a, b]))


@pytest.mark.parametrize("jitter_ms", [0, 4])
def test_cursor_during_play_matches_ear(jitter_ms):
    card, pb = _rig(output_latency_ms=120, jitter_ms=jitter_ms, seed=1)
    _add(pb, 1, _pcm(30000, 1))
    _add(pb, 2, _pcm(30000, 2))
    errors = []
    for _ in range(200):
        card.step()
        for dt in (0.0, 0.0071, 0.013):
            t = card.time() + dt
            truth = card.ear.last_heard(t)
            got = pb.cursor_at(t)
            if truth is None:
                assert got is None
                continue
            assert got.segment == truth[0] or got.sample in (0, 30000) or truth[1] in (0, 30000)
            if got.segment == truth[0]:
                errors.append(abs(got.sample - truth[1]))
    assert errors and max(errors) <= 320  # within one buffer (exact when the DAC time is exact)
    assert max(errors) == 0


def test_cursor_with_wrong_dac_time_is_off_by_that_error_only():
    card, pb = _rig(output_latency_ms=100, dac_time_error_ms=10)
    _add(pb, 1, _pcm(32000, 1))
    card.run(1.0)
    t = card.time()
    assert card.ear.heard(1, t) - pb.cursor_at(t).sample == 160
    cur = pb.pause()
    card.run(0.5)
    assert cur == card.ear.last_heard()  # the handed-over cursor does not depend on the clock


def test_underrun_plays_silence_without_advancing():
    card, pb = _rig(output_latency_ms=100)
    pcm = _pcm(16000, 3)
    pb.add_segment(SegmentInfo(1, 16000))
    pb.add_audio(1, 0, pcm[:4000])
    card.run(1.0)
    assert pb.handed_cursor == Cursor(1, 4000)
    assert pb.underruns > 0
    pb.add_audio(1, 4000, pcm[4000:], last=True)
    card.run(1.5)
    assert card.ear.sequence(1) == [(0, 16000)]  # contiguous in samples...
    assert card.ear.when(1, 4000) - card.ear.when(1, 3999) > 0.5  # ...with silence between at the ear
    assert card.ear.heard(1) == 16000


def test_duplicates_dropped_gap_drops_segment():
    card, pb = _rig()
    pcm = _pcm(12000, 4)
    pb.add_segment(SegmentInfo(1, 12000))
    assert pb.add_audio(1, 0, pcm[:4000]) == ChunkResult.ACCEPTED
    assert pb.add_audio(1, 0, pcm[:4000]) == ChunkResult.DUPLICATE
    assert pb.add_audio(1, 2000, pcm[2000:6000]) == ChunkResult.DUPLICATE
    assert pb.add_audio(1, 4000, pcm[4000:8000]) == ChunkResult.ACCEPTED
    assert pb.add_audio(9, 0, pcm[:10]) == ChunkResult.UNKNOWN_SEGMENT
    assert pb.add_audio(1, 8000, _pcm(5000, 1)) == ChunkResult.OVERRUN
    assert not pb.add_segment(SegmentInfo(1, 12000))  # re-announcement ignored
    pb.add_segment(SegmentInfo(2, 8000))
    assert pb.add_audio(2, 4000, pcm[:4000]) == ChunkResult.GAP
    assert pb.add_audio(2, 0, pcm[:4000]) == ChunkResult.UNKNOWN_SEGMENT  # the segment is gone
    events = pb.poll_events()
    assert SegmentsDropped((2,), "gap") in events
    pb.add_audio(1, 8000, pcm[8000:], last=True)
    card.run(1.5)
    assert card.ear.sequence(1) == [(0, 12000)] and card.ear.sequence(2) == []


def test_flush_drops_queued_audio_but_handed_samples_play():
    card, pb = _rig(output_latency_ms=100)
    _add(pb, 1, _pcm(32000, 1))
    _add(pb, 2, _pcm(32000, 2))
    card.run(0.5)
    handed = pb.handed_cursor
    assert pb.flush() == (1, 2)
    card.run(1.0)
    assert card.ear.last_heard() == handed
    assert card.ear.sequence(2) == []
    assert pb.add_audio(1, handed.sample, _pcm(10, 1)) == ChunkResult.UNKNOWN_SEGMENT
    assert pb.queued_ms(card.time()) == 0
    assert not pb.has_queued()


def test_events_are_due_when_the_ear_hears_them():
    card, pb = _rig(output_latency_ms=100)
    _add(pb, 1, _pcm(8000, 1))
    _add(pb, 2, _pcm(4000, 2))
    card.run(2.0)
    evs = pb.poll_events(now=0.0)
    assert evs == []
    evs = pb.poll_events(now=card.time())
    ends = [e for e in evs if isinstance(e, SegmentEnded)]
    assert [(e.segment, e.samples) for e in ends] == [(1, 8000), (2, 4000)]
    assert ends[0].at == pytest.approx(card.ear.when(1, 7999) + 1 / SR)
    assert ends[1].at == pytest.approx(card.ear.when(2, 3999) + 1 / SR)
    starts = [e for e in evs if isinstance(e, SegmentStarted)]
    assert starts[0].at == card.ear.when(1, 0)
    idle = [e for e in evs if isinstance(e, Idle)]
    assert len(idle) == 1 and idle[0].cursor == Cursor(2, 4000) and idle[0].at == ends[1].at


def test_queued_ms_counts_queue_and_in_flight():
    card, pb = _rig(output_latency_ms=100)
    _add(pb, 1, _pcm(16000, 1))
    assert pb.queued_ms(0.0) == pytest.approx(1000.0)
    card.run(0.5)
    t = card.time()
    heard = card.ear.heard(1, t)
    assert pb.queued_ms(t) == pytest.approx(1000.0 * (16000 - heard) / SR)


def test_heard_words():
    from icp.words import WordTiming

    pb = Playback()
    words = (WordTiming("hello", 0, 400), WordTiming("there", 450, 900))
    pb.add_segment(SegmentInfo(1, 16000, words))
    assert pb.heard_words(Cursor(1, 3200)) == 1   # 200 ms: half of "hello"
    assert pb.heard_words(Cursor(1, 11200)) == 2  # 700 ms: "there" more than half played


def test_a_segment_lost_on_the_way_stops_playback_at_the_hole_until_a_flush():
    """The `prev` chain: after a missing segment nothing later plays (no words skipped); a flush resets."""
    pb = Playback(PlaybackSettings(sample_rate=16000))
    assert pb.add_segment(SegmentInfo(1, 1600, prev=0))
    assert not pb.add_segment(SegmentInfo(3, 1600, prev=2))  # segment 2 never arrived
    assert not pb.add_segment(SegmentInfo(4, 1600, prev=3))  # and nothing after the hole is queued
    pb.flush()
    assert pb.add_segment(SegmentInfo(5, 1600, prev=0))  # the engine's re-sent reply starts a new chain


def test_a_segment_whose_audio_stops_coming_is_dropped_with_what_follows():
    """The connection broke while a segment's last chunks were on the way: waiting for them would
    hold the queue forever (the device would report queued audio and never run dry, so the engine
    would never re-send). After `starve_s` without audio it is dropped with what is queued behind it,
    the device goes idle, and nothing later plays until the engine's flush."""
    card, pb = _rig(output_latency_ms=100)
    pb.add_segment(SegmentInfo(1, 32000, prev=0))
    assert pb.add_audio(1, 0, _pcm(8000, 1)) == ChunkResult.ACCEPTED  # a quarter came
    assert pb.add_segment(SegmentInfo(2, 16000, prev=1))
    assert pb.add_audio(2, 0, _pcm(16000, 2), last=True) == ChunkResult.ACCEPTED
    card.run(1.5)  # under starve_s: still waiting, the rest may yet come
    assert pb.has_queued() and pb.queued_ms(card.time()) > 0
    card.run(1.5)
    events = pb.poll_events()
    assert SegmentsDropped((1, 2), "starved") in events and any(isinstance(e, Idle) for e in events)
    assert not pb.has_queued() and pb.queued_ms(card.time()) == 0
    assert card.ear.heard(1) == 8000 and card.ear.sequence(2) == []
    assert not pb.add_segment(SegmentInfo(3, 1600, prev=2))  # past the hole: not played
    pb.flush()
    assert pb.add_segment(SegmentInfo(4, 1600, prev=0))


def test_a_pause_is_not_starvation():
    card, pb = _rig(output_latency_ms=100)
    pb.add_segment(SegmentInfo(1, 32000, prev=0))
    pb.add_audio(1, 0, _pcm(8000, 1))
    card.run(1.0)  # waiting for the rest
    pb.pause()
    card.run(5.0)
    pb.resume()
    card.run(1.0)
    assert pb.has_queued() and not any(isinstance(e, SegmentsDropped) for e in pb.poll_events())
