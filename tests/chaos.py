"""A chaos driver: one kind of fault at a time, over and over, beside a running workload.

Each scenario runs in a thread until the workload ends, records what it did and when, and
always leaves the servers answering (a paused server is resumed, a killed one restarted).
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from .servers import PersistentRedis, RedisServer, SentinelDeployment

__all__ = ["Scenario", "chaos", "client_kill", "kill9_restart", "kill_tracking", "pause", "sentinel_failover"]

# A scenario: given a stop event and a log, does its fault until the event is set.
Scenario = Callable[[threading.Event, Callable[[str], None]], None]


def kill9_restart(server: PersistentRedis, rng: random.Random) -> Scenario:
    """Snapshot, let writes (and their evictions) happen, then crash and come back from the
    snapshot: the evictions since are lost, the entries they deleted are back."""

    def run(stop: threading.Event, log: Callable[[str], None]) -> None:
        while not stop.wait(rng.uniform(1.0, 2.5)):
            with contextlib.suppress(redis.RedisError), redis.Redis(port=server.port, socket_timeout=5) as client:
                client.save()
                log("SAVE")
            if stop.wait(rng.uniform(0.3, 1.0)):
                break
            server.kill9()
            log("kill -9")
            time.sleep(0.2)
            server.restart()
            log("restarted from its files")

    return run


def pause(process: Any, rng: random.Random, seconds: float = 0.3) -> Scenario:
    """SIGSTOP the server for longer than the transport's bound, then SIGCONT."""

    def run(stop: threading.Event, log: Callable[[str], None]) -> None:
        while not stop.wait(rng.uniform(0.5, 1.5)):
            process.send_signal(signal.SIGSTOP)
            log("SIGSTOP")
            time.sleep(seconds)
            process.send_signal(signal.SIGCONT)
            log("SIGCONT")

    return run


def sentinel_failover(deployment: SentinelDeployment, rng: random.Random) -> Scenario:
    """Kill -9 the master; Sentinel promotes the replica; the old master rejoins as a replica,
    and the next failover waits until it has synced (a replica that has not cannot be
    promoted: that would be a dead deployment, not a failover)."""

    def run(stop: threading.Event, log: Callable[[str], None]) -> None:
        while not stop.wait(rng.uniform(4.0, 8.0)):
            old = deployment.master_port()
            new = deployment.failover()
            log(f"failover {old} -> {new}")
            deployment.rejoin(old)
            while not stop.is_set():
                try:
                    deployment.wait_replica_synced(timeout=5.0)
                except RuntimeError:
                    continue  # Sentinel is still reconfiguring it
                log(f"{old} rejoined as a replica")
                break

    return run


def client_kill(server: RedisServer, rng: random.Random) -> Scenario:
    """Kill every client connection (but the driver's own), over and over."""

    def run(stop: threading.Event, log: Callable[[str], None]) -> None:
        with redis.Redis(port=server.port) as admin:
            while not stop.wait(rng.uniform(0.1, 0.5)):
                killed = admin.client_kill_filter(_type="normal", skipme=True)
                log(f"CLIENT KILL: {killed}")

    return run


def kill_tracking(server: RedisServer, rng: random.Random) -> Scenario:
    """Kill the near caches' tracking connections (the clients with tracking on), over and over."""

    def run(stop: threading.Event, log: Callable[[str], None]) -> None:
        with redis.Redis(port=server.port) as admin:
            while not stop.wait(rng.uniform(0.2, 0.6)):
                tracking = [client["id"] for client in admin.client_list() if "t" in client["flags"]]
                for client_id in tracking:
                    with contextlib.suppress(redis.ResponseError):  # gone already
                        admin.client_kill_filter(_id=client_id)
                log(f"killed {len(tracking)} tracking connections")

    return run


@contextlib.contextmanager
def chaos(scenario: Scenario) -> Iterator[list[tuple[float, str]]]:
    """Run ``scenario`` beside the ``with`` block; yields its events (seconds since the start)."""
    events: list[tuple[float, str]] = []
    started = time.monotonic()
    stop = threading.Event()
    failures: list[BaseException] = []

    def log(what: str) -> None:
        events.append((time.monotonic() - started, what))

    def target() -> None:
        try:
            scenario(stop, log)
        except BaseException as error:  # reported after the workload
            failures.append(error)

    thread = threading.Thread(target=target, name="chaos", daemon=True)
    thread.start()
    try:
        yield events
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not failures, f"the chaos driver failed: {failures!r}"
