"""The Redis store and ownership primitives against a real redis-server: claims, the fence, takeover."""

from __future__ import annotations

import time

import pytest

from icp.messages import SequenceTracker
from server.fleet import Resequencer
from server.ownership import Ownership
from server.redis_store import Claimed, LostOwnership, RedisStore, RedisUrl, connect
from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_url(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server.url


def make_store(url: str, tokens: dict[str, str]) -> RedisStore:
    return RedisStore(connect(url), "segue:test", tokens=tokens.get)


def test_url_parsing():
    assert RedisUrl.parse("redis://h:7000/3") == RedisUrl("h", 7000, 3)
    assert RedisUrl.parse("redis://h") == RedisUrl("h", 6379, 0)
    with pytest.raises(ValueError):
        RedisUrl.parse("http://h:1/0")


def test_claim_is_a_compare_and_set_and_every_write_is_fenced(redis_url):
    a_tokens: dict[str, str] = {}
    b_tokens: dict[str, str] = {}
    a, b = make_store(redis_url, a_tokens), make_store(redis_url, b_tokens)
    first = a.claim("dev1", "", "A")
    assert isinstance(first, Claimed) and first.token == "A|1" and first.snapshot is None
    assert b.claim("dev1", "", "B") == "A|1"  # B saw no owner, but A got there first
    a_tokens["dev1"] = first.token
    a.save("dev1", {"device_id": "dev1", "n": 1})
    assert b.load("dev1") == {"device_id": "dev1", "n": 1}
    second = b.claim("dev1", "A|1", "B")  # B takes over (A gone)
    assert isinstance(second, Claimed) and second.token == "B|2" and second.snapshot == {"device_id": "dev1", "n": 1}
    assert second.out_session == first.out_session  # the downlink session survives; seq moves to a new block
    b_tokens["dev1"] = second.token
    with pytest.raises(LostOwnership) as lost:
        a.save("dev1", {"device_id": "dev1", "n": 99})  # the stale owner's write is refused
    assert lost.value.device_ids == ["dev1"]
    assert b.load("dev1") == {"device_id": "dev1", "n": 1}
    assert b.outbound("dev1")[1] > a.outbound("dev1")[1]


def test_inbound_replay_state_travels_with_the_snapshot(redis_url):
    tokens: dict[str, str] = {}
    trackers = {"dev1": SequenceTracker(session="s1", last_seq=41)}
    store = RedisStore(connect(redis_url), "segue:test", tokens=tokens.get, trackers=trackers)
    claimed = store.claim("dev1", "", "A")
    tokens["dev1"] = claimed.token
    store.save("dev1", {"device_id": "dev1"})
    again = make_store(redis_url, {}).claim("dev1", claimed.token, "B")
    assert again.inbound == ("s1", 41)


def test_a_dead_workers_devices_are_taken_over_within_a_scan(redis_url):
    claims: list[tuple[str, str]] = []
    a = Ownership(make_store(redis_url, {}), "A", on_claimed=lambda d, c, p: claims.append(("A", d)),
                  on_lost=lambda ds: None)
    a.store.tokens = a.token
    b = Ownership(make_store(redis_url, {}), "B", on_claimed=lambda d, c, p: claims.append(("B", d)),
                  on_lost=lambda ds: None, scan_s=0.1)
    b.store.tokens = b.token
    pubsub_a = a.client.pubsub()
    pubsub_a.subscribe(a.keys.forward("A"))  # A's forwarding subscription: what makes it look alive
    pubsub_b = b.client.pubsub()
    pubsub_b.subscribe(b.keys.forward("B"))
    pubsub_a.get_message(timeout=1), pubsub_b.get_message(timeout=1)
    a.start(), b.start()
    try:
        assert a.route("dev1") is None and a.route("dev2") is None  # A claims both on first contact
        assert b.route("dev1") == "A"
        pubsub_a.close()  # A's process dies: its connection (and subscription) are gone
        a.stop(release=False)
        started = time.monotonic()
        while not (b.owns("dev1") and b.owns("dev2")) and time.monotonic() - started < 3:
            time.sleep(0.02)
        assert b.owns("dev1") and b.owns("dev2"), claims
        assert time.monotonic() - started < 1.0
        assert b.takeovers == 2
    finally:
        b.stop()
        pubsub_b.close()


def test_resequencer_puts_a_devices_messages_back_in_order():
    trackers = {"d": SequenceTracker(session="s", last_seq=1)}
    out: list[int] = []

    def deliver(topic: str, payload: bytes) -> None:
        seq = int(payload.split(b'"seq":')[1].split(b",")[0])
        out.append(seq)
        trackers["d"].check("s", seq)

    reseq = Resequencer(trackers, hold_s=0.3)
    msg = lambda n: b'{"session":"s","seq":%d,"type":"playback"}' % n  # noqa: E731
    reseq.offer("d", "segue/d/up/playback", msg(3), 0.0, deliver)
    assert out == []  # 2 is missing: wait for it
    reseq.offer("d", "segue/d/up/playback", msg(2), 0.01, deliver)
    assert out == [2, 3]
    reseq.offer("d", "segue/d/up/playback", msg(5), 0.02, deliver)
    reseq.tick(0.1, deliver)
    assert out == [2, 3]
    reseq.tick(0.4, deliver)  # 4 never came: go on without it
    assert out == [2, 3, 5] and reseq.waited == 1


def test_the_writer_thread_writes_behind_and_reports_a_refused_write(redis_url):
    """A worker writes from a thread of its own (the engine's loop never waits for Redis): the fence
    still refuses a stale owner, and says so through `on_lost` instead of an exception."""
    a_tokens: dict[str, str] = {}
    b_tokens: dict[str, str] = {}
    lost: list[str] = []
    a = make_store(redis_url, a_tokens).start_writer(on_lost=lost.extend)
    b = make_store(redis_url, b_tokens)
    try:
        claimed = a.claim("dev1", "", "A")
        a_tokens["dev1"] = claimed.token
        a.save("dev1", {"device_id": "dev1", "n": 1})
        a.log_event("dev1", "resume", {"word": 3})
        assert a.drain()
        assert b.load("dev1") == {"device_id": "dev1", "n": 1}
        assert b.events("dev1") == [("resume", {"word": 3})]
        b_tokens["dev1"] = b.claim("dev1", claimed.token, "B").token
        a.save("dev1", {"device_id": "dev1", "n": 99})  # no exception here: the writer reports it
        assert a.drain() and lost == ["dev1"]
        assert b.load("dev1") == {"device_id": "dev1", "n": 1}
    finally:
        a.close()
        b.close()
