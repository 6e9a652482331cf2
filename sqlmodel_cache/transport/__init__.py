"""Bytes-only Redis transports: the sessions decide what to cache, these only move bytes.

Both transports bound every call (``timeout``), share one circuit breaker implementation,
and convert every Redis error into `TransportError` in one place (`_guard`), so the sessions
can treat any Redis failure as a miss (fail-open).
"""

from sqlmodel_cache._errors import TransportError

from ._async import RedisAsyncTransport
from ._clients import DEFAULT_TIMEOUT
from ._contract import Answer, Answers, AsyncTransport, SyncTransport, Transport
from ._sync import RedisSyncTransport

__all__ = [
    "DEFAULT_TIMEOUT",
    "Answer",
    "Answers",
    "AsyncTransport",
    "RedisAsyncTransport",
    "RedisSyncTransport",
    "SyncTransport",
    "Transport",
    "TransportError",
]
