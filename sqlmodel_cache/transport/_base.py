"""What both transports share: owns the checks of their arguments, the guard that every call
goes through, and the breaker state they report."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from sqlmodel_cache._errors import ConfigurationError

from ._clients import DEFAULT_COOLDOWN, DEFAULT_FAILURE_THRESHOLD, DEFAULT_TIMEOUT, check_binary_client, check_settings
from ._guard import Guard

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
        self._guard = Guard(failure_threshold, cooldown, self._start())

    @classmethod
    def _name(cls) -> str:
        return next(c.__name__ for c in cls.__mro__ if "_clients" in c.__dict__)

    def _start(self) -> Any:
        """Set up this transport's own I/O; returns the cluster client that routes keys, if any."""
        raise NotImplementedError

    @property
    def breaker_state(self) -> str:
        """ "closed", "open" or "half-open" (open if any cluster node's breaker is)."""
        return self._guard.state

    @property
    def breaker_trips(self) -> int:
        return self._guard.trips

    def __repr__(self) -> str:
        return f"{self._name()}({self.client!r}, timeout={self.timeout})"
