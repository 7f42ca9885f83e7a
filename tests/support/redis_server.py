"""Tests start their own redis-server on a free port (the launcher benches use too)."""

from evaluation.redis_server import RedisServer

__all__ = ["RedisServer"]
