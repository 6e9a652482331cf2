"""The stale-set race, step by step: every interleaving of a reader and a writer.

Reader: R1 lookup (takes the lease), R2 SELECT, R3 fill. Writer: W1 commit, W2 eviction.
A transport subclass pauses each thread at those steps (the transport is the seam between
the session and Redis), so each of the ten interleavings runs deterministically. Whatever
the order, the cache must end empty or holding the committed row, never the old one: for
``get()`` by primary key, and for ``get_by()`` of a unique lookup whether the writer changes
another column of the row or moves it away from the looked-up value.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import CachedSession, SQLModelCache
from sqlmodel_cache.transport import Answer, RedisSyncTransport

from .entries import lookup_row_in, row_in
from .models import Account, Hero

READER = ("R1", "R2", "R3")
WRITER = ("W1", "W2")


def interleavings() -> Iterator[tuple[str, ...]]:
    for slots in itertools.combinations(range(5), 2):
        order: list[str] = []
        reader, writer = iter(READER), iter(WRITER)
        for i in range(5):
            order.append(next(writer) if i in slots else next(reader))
        yield tuple(order)


class Turns:
    """Lets each step run only when the schedule says it is its turn."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = list(order)
        self.position = 0
        self.condition = threading.Condition()

    def wait(self, step: str) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: self.order[self.position] == step, timeout=10):
                raise TimeoutError(f"step {step} never got its turn in {self.order}")

    def done(self, step: str) -> None:
        with self.condition:
            assert self.order[self.position] == step
            self.position += 1
            self.condition.notify_all()


class SteppedTransport(RedisSyncTransport):
    """Pauses the reader around its lookup, SELECT and fill, and the writer before eviction."""

    def __init__(self, client: redis.Redis, turns: Turns, honour_leases: bool = True) -> None:
        super().__init__(client)
        self.turns = turns
        self.honour_leases = honour_leases

    @staticmethod
    def role() -> str:
        return threading.current_thread().name

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        if self.role() != "reader":
            return super().lookup(key, lease, lease_ms)
        self.turns.wait("R1")
        value = super().lookup(key, lease, lease_ms)
        self.turns.done("R1")
        self.turns.wait("R2")  # the SELECT runs when this returns
        return value

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool:
        self.turns.done("R2")
        self.turns.wait("R3")
        try:
            if self.honour_leases:
                return super().settle(key, lease, value, ttl_ms, epoch)
            self.client.set(key, value, px=ttl_ms)  # what a cache without leases would do
            return True
        finally:
            self.turns.done("R3")

    def delete_many(self, keys: Sequence[str]) -> None:
        if self.role() != "writer":
            return super().delete_many(keys)
        self.turns.done("W1")  # the database commit has happened
        self.turns.wait("W2")
        try:
            return super().delete_many(keys)
        finally:
            self.turns.done("W2")


@dataclass(frozen=True)
class Race:
    """What the reader reads, what the writer changes, and where the entry must not go stale."""

    seed: Callable[[], Any]
    read: Callable[[CachedSession], Any]
    write: Callable[[Any], None]  # changes the row the writer loaded by primary key
    model: type
    key: Callable[[], str]
    stale: Callable[[bytes | None], bool]


def _stale_hero(entry: bytes | None) -> bool:
    row = row_in(entry, Hero, 1)
    return row is not None and row["name"] != "new"


ADA = "ada@example.com"


def _account() -> Account:
    return Account(id=1, email=ADA, tenant_id=7, slug="ada", name="old")


def _stale_lookup(entry: bytes | None) -> bool:
    row = lookup_row_in(entry, Account, email=ADA)
    return row is not None and row["name"] != "new"


def _holds_the_moved_row(entry: bytes | None) -> bool:
    return lookup_row_in(entry, Account, email=ADA) is not None  # the row no longer has that email


def _rename(row: Any) -> None:
    row.name = "new"


def _move(row: Any) -> None:
    row.email = "new@example.com"


RACES = {
    "get": Race(
        lambda: Hero(id=1, name="old"),
        lambda session: session.get(Hero, 1),
        _rename,
        Hero,
        lambda: SQLModelCache.cache_key(Hero, 1),
        _stale_hero,
    ),
    "get_by-other-column": Race(
        _account,
        lambda session: session.get_by(Account, email=ADA),
        _rename,
        Account,
        lambda: SQLModelCache.lookup_key(Account, email=ADA),
        _stale_lookup,
    ),
    "get_by-moved-row": Race(
        _account,
        lambda session: session.get_by(Account, email=ADA),
        _move,
        Account,
        lambda: SQLModelCache.lookup_key(Account, email=ADA),
        _holds_the_moved_row,
    ),
}


def run_race(
    engine: sa.Engine, client: redis.Redis, order: Sequence[str], honour_leases: bool = True, race: Race = RACES["get"]
) -> bytes | None:
    client.flushall()
    with Session(engine) as session:
        session.merge(race.seed())
        session.commit()
    turns = Turns(order)
    SQLModelCache.reset()
    SQLModelCache.configure(transport=SteppedTransport(client, turns, honour_leases))
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with CachedSession(engine) as session:
                race.read(session)
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        try:
            turns.wait("W1")
            with CachedSession(engine) as session:
                row = session.get(race.model, 1, execution_options={"cache": False})
                assert row is not None
                race.write(row)
                session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, name="reader"), threading.Thread(target=writer, name="writer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return client.get(race.key())  # type: ignore[return-value]


@pytest.mark.parametrize("race", list(RACES))
@pytest.mark.parametrize("order", list(interleavings()), ids="-".join)
def test_no_interleaving_leaves_a_stale_entry(
    engine: sa.Engine, any_real_redis: redis.Redis, order: tuple[str, ...], race: str
) -> None:
    entry = run_race(engine, any_real_redis, order, race=RACES[race])
    assert not RACES[race].stale(entry), f"stale entry after {order}"
    SQLModelCache.reset()
    SQLModelCache.configure(transport=RedisSyncTransport(any_real_redis))
    with CachedSession(engine) as session:
        if race == "get":
            assert session.get(Hero, 1).name == "new"  # type: ignore[union-attr]
        elif race == "get_by-other-column":
            assert session.get_by(Account, email=ADA).name == "new"  # type: ignore[union-attr]
        else:
            assert session.get_by(Account, email=ADA) is None
            assert session.get_by(Account, email="new@example.com").id == 1  # type: ignore[union-attr]


def test_without_leases_the_race_would_serve_stale_rows(engine: sa.Engine, real_redis: redis.Redis) -> None:
    """The same schedules with an unconditional fill: some end stale, so the test has teeth."""
    for race in RACES.values():
        stale_orders = [o for o in interleavings() if race.stale(run_race(engine, real_redis, o, False, race))]
        assert ("R1", "R2", "W1", "W2", "R3") in stale_orders


def test_only_the_expected_interleavings_publish(engine: sa.Engine, real_redis: redis.Redis) -> None:
    """A fill lands only when the reader's SELECT followed the commit or preceded the eviction."""
    outcomes: dict[tuple[str, ...], Any] = {}
    for order in interleavings():
        entry = run_race(engine, real_redis, order)
        outcomes[order] = None if entry is None or entry.startswith(b"\x00") else "value"
    # reader entirely before the writer: it fills "old", and the eviction removes it
    assert outcomes[("R1", "R2", "R3", "W1", "W2")] is None
    # reader entirely after the writer: it fills the committed row
    assert outcomes[("W1", "W2", "R1", "R2", "R3")] == "value"
