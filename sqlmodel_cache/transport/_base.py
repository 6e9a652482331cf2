"""What both transports share: owns the checks of their arguments, the guard that every call
goes through, the breaker state they report, and the near cache's tracking of their servers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlmodel_cache._errors import ConfigurationError
from sqlmodel_cache._near import NearCache

from ._clients import DEFAULT_COOLDOWN, DEFAULT_FAILURE_THRESHOLD, DEFAULT_TIMEOUT, check_binary_client, check_settings
from ._guard import Guard
from ._tracking import ServerTracking, Tracking

__all__ = ["GuardedTransport"]

ClientT = TypeVar("ClientT")


class GuardedTransport(Generic[ClientT]):
    """A transport over one kind of redis-py client; subclasses name the kind and do the I/O.

    ``timeout`` bounds every call (whatever the client's own timeouts); after
    ``failure_threshold`` consecutive failures Redis is left alone for ``cooldown`` seconds.
    """

    is_async: ClassVar[bool]
    # The clients this transport takes, how to name them, and the other transport's.
    _clients: ClassVar[tuple[type, ...]]
    _clients_named: ClassVar[str]
    _other_clients: ClassVar[tuple[type, ...]]
    _other_transport: ClassVar[str]

    def __init__(
        self,
        client: ClientT,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        name = self._name()
        if not isinstance(client, self._clients):  # checked at run time: a wrong client must fail here, clearly
            hint = f"; use {self._other_transport} for it" if isinstance(client, self._other_clients) else ""
            raise ConfigurationError(f"{name} needs {self._clients_named} client, got {type(client).__name__}{hint}")
        check_binary_client(client, name)
        check_settings(timeout, failure_threshold, cooldown, name)
        self.client = client
        self.timeout = timeout
        router = self._start()
        self._guard = Guard(failure_threshold, cooldown, router)
        self._on_cluster = router is not None

    @classmethod
    def _name(cls) -> str:
        return next(c.__name__ for c in cls.__mro__ if "_clients" in c.__dict__)

    def _start(self) -> Any:
        """Set up this transport's own I/O; returns the cluster client that routes keys, if any."""
        raise NotImplementedError

    def _tracking_targets(self) -> dict[str, Callable[[], Any]]:
        """The servers whose keys the near cache tracks, by name: how to connect to each."""
        raise NotImplementedError

    def track(self, near: NearCache, prefix: str) -> Tracking:
        """Track the keys under ``prefix`` on every server of this transport, for ``near``.

        Entries are served only while a ping sent less than a quarter of the bound ago has
        been answered: under the time a commit waits for its eviction's reply, so a paused
        server's held-back invalidations cannot let a near entry outlive a commit.
        """
        validity = self.timeout / 4
        if not self._on_cluster:  # one server for good (a Sentinel service's master moves, not it)
            [(name, factory)] = self._tracking_targets().items()
            fixed = (ServerTracking(factory, prefix, near, validity, name),)
            return Tracking(lambda: fixed, near, self._guard.all_closed)
        tracked: dict[str, ServerTracking] = {}
        lock = threading.Lock()
        known: list[Any] = [None, ()]  # the targets last seen, and their trackings

        def servers() -> Sequence[ServerTracking]:
            targets = self._tracking_targets()  # the same dict while the layout is unchanged
            if targets is known[0]:
                return known[1]  # type: ignore[no-any-return]
            with lock:
                for name in [name for name in tracked if name not in targets]:
                    tracked.pop(name).close()  # no longer a master: its keys are elsewhere
                    near.drop()
                for name, factory in targets.items():
                    if name not in tracked:
                        tracked[name] = ServerTracking(factory, prefix, near, validity, name)
                known[:] = [targets, tuple(tracked.values())]
            return known[1]  # type: ignore[no-any-return]

        return Tracking(servers, near, self._guard.all_closed)

    @property
    def breaker_state(self) -> str:
        """ "closed", "open" or "half-open" (open if any cluster node's breaker is)."""
        return self._guard.state

    @property
    def breaker_trips(self) -> int:
        return self._guard.trips

    def __repr__(self) -> str:
        return f"{self._name()}({self.client!r}, timeout={self.timeout})"
