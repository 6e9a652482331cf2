"""Cluster routing: owns which node serves a key, and keeping the cluster's layout fresh off
the request path.

Every data command goes straight to the key's master on the transport's own connections; a
layout change (a failover, a moved slot) is learnt by a refresh that runs beside the
requests, never inside one, so a dead master costs only its own keys: the others keep their
bound. The sync and asyncio cluster clients keep the same slot map, read here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.crc import key_slot

__all__ = ["Router"]

# A refresh after a failure or a redirect waits this long after the previous one: a dead
# node must not make every request start one.
REFRESH_INTERVAL_S: Final = 0.25


class Router:
    """Key to master, from ``cluster``'s slot map; ``start_refresh`` runs a refresh beside the
    requests (a thread, or a task of the loop) and must not block."""

    def __init__(self, cluster: Any, start_refresh: Callable[[], None]) -> None:
        self._nodes_manager = cluster.nodes_manager
        self._start_refresh = start_refresh
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        self.refreshing = False

    def node_of(self, key: str) -> Any:
        """The master serving ``key``, or ``None`` while the layout is unknown."""
        try:
            # The slot's primary, read as ``get_node_from_slot`` reads it, without its lock and
            # argument checks (a dict read is atomic); the slot of the bytes we send.
            return self._nodes_manager.slots_cache[key_slot(key.encode())][0]
        except (KeyError, IndexError):
            self.stale()
            return None

    def group(self, keys: Sequence[str]) -> dict[Any, list[int]]:
        """The positions of ``keys`` by the node that serves them (``None``: unknown)."""
        groups: dict[Any, list[int]] = {}
        for position, key in enumerate(keys):
            groups.setdefault(self.node_of(key), []).append(position)
        return groups

    def stale(self) -> None:
        """The layout may have changed (a node failed, a slot moved): refresh it soon."""
        now = time.monotonic()
        with self._lock:
            if self.refreshing or now - self._last_refresh < REFRESH_INTERVAL_S:
                return
            self.refreshing, self._last_refresh = True, now
        try:
            self._start_refresh()
        except BaseException:
            self.refreshed()
            raise

    def refreshed(self) -> None:
        self.refreshing = False
