"""Client tracking: owns the connections on which Redis tells this process of every change to
a key under the prefix, for the near cache (`sqlmodel_cache._near`).

Each tracked server gets one RESP3 connection of its own with ``CLIENT TRACKING ON BCAST
PREFIX <prefix>:``: Redis pushes the names of the keys changed under the prefix, whoever
changed them, in order with the replies on that connection. Before an entry is served, what
has reached the socket is read (a poll that does not block), so every invalidation that has
reached the process is applied first.

A server that says nothing may be paused, its invalidations held back while a commit's
eviction waits there; so the connection also pings it, and entries are served only while a
ping sent less than ``validity`` ago has been answered (whatever was pushed before that
answer has been applied). ``validity`` is a quarter of the transport's bound, under the time a
commit waits for its eviction's reply. Connections are (re)made, and pings sent, by a
background thread; a lost connection, a breaker that opened, or a fork drops every near
entry until tracking is back.

redis-py's own client-side caching (``cache_config``) is not used: it caches replies of read
commands per connection and needs Redis 7.4, while the cache reads with ``SET ... NX GET``
(the lease) on Redis 7.0 too, and its asyncio client has none.
"""

from __future__ import annotations

import collections
import contextlib
import select
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlmodel_cache._near import NearCache
from sqlmodel_cache._stats import logger

from ._connections import fork_generation

__all__ = ["ServerTracking", "Tracking"]

# How often the background thread looks at its connections when nothing is read near: a
# first read after a quiet spell goes to Redis, and asks for a ping at once.
_IDLE_S: Final = 0.1
# A process that served no near entry for this long stops pinging.
_ACTIVE_S: Final = 1.0


class ServerTracking:
    """The tracking connection to one server (a single server, a Sentinel service's master, or
    one cluster master)."""

    def __init__(self, factory: Callable[[], Any], prefix: str, near: NearCache, validity: float, name: str) -> None:
        self._factory = factory
        self._prefix = prefix.encode()
        self._near = near
        self.validity = validity
        self.name = name
        self._lock = threading.Lock()
        self._connection: Any = None
        # Has anything reached the socket? (a poll with a timeout of 0: a non-empty list)
        self._arrived: Callable[[int], object] = _nothing
        # Unanswered pings: when each was sent, and since when its answer vouches that Redis
        # has run what was sent to it (see `_ping`).
        self._pings: collections.deque[tuple[float, float]] = collections.deque()
        self._answered = -1e9  # what the last answered ping vouches for
        self._trusted_from = -1e9  # pings sent before are not trusted (a stall was seen)
        self._stalled = False  # a ping's answer was looked for, and late
        self.used = 0.0  # when a reader last asked
        self._told = False  # a failure to connect was logged

    # The reader's side --------------------------------------------------------------------

    def current(self, now: float) -> bool:
        """Apply what has reached the socket; whether entries may be served."""
        self.used = now
        with self._lock:
            connection = self._connection
            if connection is None:
                return False
            try:
                if self._arrived(0):
                    self._drain(connection)
                if now - self._answered < self.validity:
                    return True
                # After a quiet spell (the thread pings only while readers come): ping now, and
                # wait for the answer a little, a round trip on a server that is well.
                if not self._pings:
                    self._ping(connection, now)
                deadline = now + self.validity / 5
                while self._pings and (left := deadline - time.monotonic()) > 0 and connection.can_read(timeout=left):
                    self._read(connection)
                self._drain(connection)  # what came in the same read as the answer
                return time.monotonic() - self._answered < self.validity
            except Exception as error:  # the connection is gone, or out of step
                self._lost(error)
                return False

    def _drain(self, connection: Any) -> None:
        """Apply everything read so far. Every read of the connection ends here, with the
        parser empty: what a read took in beyond the reply it wanted waits in the parser,
        where the next poll of the socket cannot see it."""
        while connection.can_read(timeout=0):
            self._read(connection)
        if self._pings and time.monotonic() - self._pings[0][0] > self.validity:
            self._stalled = True  # looked, and its answer is late: Redis (or the way to it) stalls

    def _read(self, connection: Any) -> None:
        reply = connection.read_response(push_request=True)
        if reply is _PUSHED:
            return
        if reply in (b"PONG", "PONG") and self._pings:
            _, vouches_for = self._pings.popleft()
            if self._stalled:
                # The first answer after a stall. What waited meanwhile on every connection
                # runs now, in an order between connections that nothing promises: a commit
                # that gave up on its eviction may not be applied yet. Forget every entry,
                # and trust only pings sent from now on.
                self._stalled = False
                self._near.drop()
                self._trusted_from = time.monotonic()
                self._answered = -1e9
            elif vouches_for >= self._trusted_from:
                self._answered = vouches_for
        # anything else (a stray reply) is ignored

    def _ping(self, connection: Any, now: float) -> None:
        connection.send_command("PING", check_health=False)
        # Redis reads all that waits on a connection at once, in its turn among the others:
        # a ping sent while an earlier one waits (a paused server) may be read and answered
        # with it, before commands other clients sent in between. Its answer vouches only
        # for what was sent before the earliest ping still waiting.
        self._pings.append((now, self._pings[0][1] if self._pings else now))

    def _lost(self, error: BaseException | None) -> None:
        if self._connection is not None:
            logger.warning(
                "near cache: lost the Redis tracking connection to %s (%s); near entries dropped until it is back",
                self.name,
                error,
            )
            _disconnect(self._connection)
        self._forget()
        self._near.drop()

    def _forget(self) -> None:
        """No connection, nothing heard: entries are not served until tracking is back."""
        self._connection = None
        self._arrived = _nothing
        self._pings.clear()
        self._answered = -1e9
        self._stalled = False  # a new connection starts with every entry dropped

    # The background thread's side ---------------------------------------------------------

    def tend(self, now: float) -> None:
        """(Re)connect if need be; while readers use the near cache, keep a ping in flight."""
        if self._connection is None:
            self._connect()
            return
        with self._lock:
            connection = self._connection
            if connection is None:
                return
            try:
                self._drain(connection)
                if now - self.used < _ACTIVE_S and (not self._pings or now - self._pings[-1][0] > self.validity):
                    self._ping(connection, now)
            except Exception as error:
                self._lost(error)

    def _connect(self) -> None:
        connection = self._factory()
        try:
            connection.connect()
            parser = connection._parser
            if not hasattr(parser, "set_invalidation_push_handler"):
                raise RuntimeError("this redis-py cannot read RESP3 invalidations; near=True needs redis-py 5.1+")
            parser.set_invalidation_push_handler(self._invalidated)
            connection.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self._prefix, check_health=False)
            reply = connection.read_response()
            if reply not in (b"OK", "OK"):
                raise RuntimeError(f"CLIENT TRACKING answered {reply!r}")
        except Exception as error:
            _disconnect(connection)
            if not self._told:  # once until it works: the near cache is idle, not broken
                self._told = True
                logger.warning(
                    "near cache: cannot track the keys of %s (%s); near entries are not served until it can "
                    "(the ACL user needs +client|tracking and +hello)",
                    self.name,
                    error,
                )
            return
        self._told = False
        with self._lock:
            self._near.drop()  # what was read before tracking began is not known to be current
            self._connection = connection
            self._arrived = _arrival_check(connection._sock)
            self._pings.clear()
            try:
                self._drain(connection)  # invalidations read along with the reply
                self._ping(connection, time.monotonic())
            except Exception as error:
                self._lost(error)

    def _invalidated(self, message: Any) -> Any:
        keys = message[1] if len(message) > 1 else None
        if keys is None:
            self._near.invalidate(None)  # FLUSHALL / FLUSHDB
        else:
            self._near.invalidate(key.decode() if isinstance(key, bytes) else key for key in keys)
        return _PUSHED

    def after_fork(self) -> None:
        """In a forked child: the parent's connection (and a lock another thread may have held
        at the fork) are not this process's; it makes its own."""
        self._lock = threading.Lock()
        self._forget()

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            _disconnect(connection)


def _disconnect(connection: Any) -> None:
    with contextlib.suppress(Exception):  # a connection already gone
        connection.disconnect()


# What the push handler answers, so that a drain tells pushes from replies.
_PUSHED: Final = object()


def _nothing(timeout: int) -> bool:
    return False


def _arrival_check(sock: Any) -> Callable[[int], object]:
    """A check, cheaper than redis-py's ``can_read`` (one ``poll`` on a poller made once), of
    whether bytes have reached ``sock``, called with a timeout of 0; a TLS socket may also
    hold decrypted bytes."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    poll = poller.poll
    if isinstance(sock, ssl.SSLSocket):
        pending = sock.pending
        return lambda timeout: pending() or poll(timeout)
    return poll  # the list of events: empty when nothing has


class Tracking:
    """The tracking of every server a transport uses, and the thread that tends it."""

    def __init__(
        self,
        servers: Callable[[], Sequence[ServerTracking]],
        near: NearCache,
        breakers_closed: Callable[[], bool],
    ) -> None:
        self._servers = servers  # the current set (a cluster's masters change)
        self._near = near
        self._breakers_closed = breakers_closed
        self._generation = fork_generation()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlmodel-cache-tracking", daemon=True)
        self._thread.start()

    def current(self) -> bool:
        if fork_generation() != self._generation:  # a forked child: the parent's sockets are not its own
            self._after_fork()
            return False
        if not self._breakers_closed():
            self._near.drop()
            return False
        now = time.monotonic()
        servers = self._servers()
        if len(servers) == 1:  # one server, or a one-master cluster
            return servers[0].current(now)
        live = True
        for server in servers:
            if not server.current(now):
                live = False
        return live

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's entries, connections and thread; start anew."""
        self._generation = fork_generation()
        self._near.after_fork()
        for server in self._servers():
            server.after_fork()
        self._stop = threading.Event()
        self._start_thread()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            servers = list(self._servers())
            for server in servers:
                try:
                    server.tend(now)
                except Exception:  # never let the thread die; the next turn tries again
                    logger.debug("near cache: tending %s failed", server.name, exc_info=True)
            active = any(now - server.used < _ACTIVE_S for server in servers)
            self._stop.wait(min(server.validity for server in servers) / 3 if active and servers else _IDLE_S)

    def close(self) -> None:
        self._stop.set()
        for server in self._servers():
            server.close()
