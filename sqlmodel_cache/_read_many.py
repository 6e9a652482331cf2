"""``get_many()`` as a flow: owns the order of its I/O steps (see `_read` for ``get()``).

The identity map, the near cache (``near=True`` models), one multi-key read of the other
keys (one MGET; one round trip per master on a cluster), leases for the misses in one more,
the wait for other readers' fills, one ``SELECT ... WHERE pk IN (...)`` for what Redis did
not have, and the settlements in one more. Every decision is the policy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper
from sqlmodel import Session, select

from ._entry import NO_ROW, Unusable
from ._errors import TransportError
from ._eviction import deliver_kept
from ._flow import Database, Flow
from ._keys import pk_values
from ._lease import Settlement, new_leases, took_lease
from ._near import NearCache
from ._policy import BUSY, ReadPolicy
from ._read import connection_for, wait_for_fills
from .transport import Answers

__all__ = ["plan_many"]

Identity = tuple[Any, ...]


def _get(entity: type, ident: Any, execution_options: Mapping[str, Any]) -> Database:
    """``Session.get`` itself, as a database step: the identity map, else one SELECT."""
    return Database(lambda session: Session.get(session, entity, ident, execution_options=execution_options))


class _ManyRead:
    """One ``get_many()``: which key goes where, and the results in the order asked."""

    def __init__(self, session: Session, entity: type, idents: list[Any], policy: ReadPolicy | None) -> None:
        self.session, self.entity, self.policy = session, entity, policy
        self.mapper: Mapper[Any] = sa.inspect(entity)
        self.results: list[Any] = [None] * len(idents)
        self.from_identity_map: list[tuple[int, Any]] = []
        self.positions: dict[Identity, list[int]] = {}
        self.database: dict[Identity, list[Any]] = {}  # read by the SELECT
        self.cached: dict[Identity, tuple[str, str]] = {}  # key and part: asked of Redis
        self.leased: dict[Identity, tuple[str, str, bytes, bytes | None]] = {}  # leases held, with their lifetime
        self.replacing: dict[Identity, bytes] = {}  # values no reader may serve, to lease over
        self.unleased: list[Identity] = []  # missed where this call may not fill
        self.busy: list[Identity] = []  # another reader's lease was there, and stayed
        self.waiting: dict[Identity, tuple[str, str]] = {}  # another reader's lease was there
        self.loaded: dict[Any, Any] = {}
        # For a model kept near: the near cache, and when the reads of Redis began.
        self.keeping: tuple[NearCache, int] | None = None
        if policy is not None:
            names: Sequence[str] = policy.info.pk_names
        else:
            names = [self.mapper.get_property_by_column(column).key for column in self.mapper.primary_key]
        identity_map = session.identity_map
        mapped = len(identity_map) > 0  # a new session (the usual case) has nothing to look up
        identity_class = self.mapper._identity_class
        for position, ident in enumerate(idents):
            target = policy.target(ident) if policy is not None else None
            pk = target[0] if target is not None else pk_values(names, ident)
            if pk is None:
                raise sa.exc.InvalidRequestError(
                    f"{ident!r} is not a primary key of {entity.__name__}: give the key columns' values, "
                    "a tuple for composite keys"
                )
            identity = (identity_class, tuple(pk), None)
            if mapped and identity in identity_map:
                self.from_identity_map.append((position, tuple(pk)))
            elif identity in self.positions:
                self.positions[identity].append(position)
            else:
                self.positions[identity] = [position]
                if target is not None and policy is not None and policy.cache_may_answer(target[1]):
                    self.cached[identity] = (target[1], target[2])
                else:
                    self.database[identity] = pk

    def place(self, identity: Identity, instance: Any) -> None:
        for position in self.positions[identity]:
            self.results[position] = instance

    def ask_redis(self, policy: ReadPolicy) -> Flow[None]:
        """Hits from the near cache, then from one multi-key read of the rest (kept near
        for a near model); leases for the misses where this call may fill (over the values
        no reader may serve, replacing them)."""
        runtime = policy.runtime
        transport = runtime.transport
        if runtime.evictions.pending:
            yield from deliver_kept(runtime)
        asked = self.cached
        near = policy.near_cache()
        if near is not None:
            asked = self.from_near(policy, near, asked)
            if not asked:
                return
            self.keeping = (near, near.started())
        if policy.needs_connection_check:
            policy.check_connection((yield connection_for(self.mapper)))
        try:
            answers = yield (transport.peek_many, ([key for key, _ in asked.values()],))
            if answers.failure is not None:
                policy.redis_failed("lookup", answers.failure)
            asked = self.sort(policy, asked, answers, replaceable=policy.no_fill is None)
            if asked and policy.no_fill is None:
                keys = [key for key, _ in asked.values()]
                leases = new_leases(len(keys))
                replacing = [self.replacing.get(identity) for identity in asked]
                answers = yield (transport.lookup_many, (keys, leases, replacing, runtime.settings.lease_ms))
                if answers.failure is not None:
                    policy.redis_failed("lookup", answers.failure)
                held = {
                    identity: (key, part, lease, epoch)
                    for (identity, (key, part)), lease, expected, raw, epoch in zip(
                        asked.items(), leases, replacing, answers.values, answers.epochs, strict=True
                    )
                    if epoch is not None and took_lease(expected, raw)
                }
                # A key filled (or leased) by another reader meanwhile is judged as found.
                others = {identity: asked[identity] for identity in asked if identity not in held}
                self.sort(policy, others, _subset(answers, asked, others), replaceable=False)
                self.leased = held
                asked = {identity: asked[identity] for identity in held}
            else:
                self.unleased = list(asked)
        except TransportError as exc:
            policy.redis_failed("lookup", exc)  # whichever step failed, what it asked goes to the SELECT
        policy.missed(len(asked))
        self.to_database(asked)
        if self.waiting:
            yield from self.wait_for_fills(policy)

    def from_near(
        self, policy: ReadPolicy, near: NearCache, asked: dict[Identity, tuple[str, str]]
    ) -> dict[Identity, tuple[str, str]]:
        """Place what the near cache holds; the rest, to ask Redis."""
        rest: dict[Identity, tuple[str, str]] = {}
        hits: list[Identity] = []
        rows: list[list[Any]] = []
        for identity, key_part in asked.items():
            verdict = near.get(key_part[0])
            if verdict is None:
                rest[identity] = key_part
            elif verdict is NO_ROW:
                policy.near_hit(verdict)
                self.place(identity, None)
            else:
                hits.append(identity)
                rows.append(policy.near_hit(verdict))
        for identity, instance in zip(hits, policy.info.load_rows(self.session, rows), strict=True):
            self.place(identity, instance)
        return rest

    def sort(
        self, policy: ReadPolicy, asked: dict[Identity, tuple[str, str]], answers: Any, *, replaceable: bool
    ) -> dict[Identity, tuple[str, str]]:
        """Hits become instances, the rest go to the SELECT; returns the keys to lease: the
        empty ones, and (``replaceable``) those holding a value no reader may serve."""
        hits: list[Identity] = []
        rows: list[list[Any]] = []
        to_lease: dict[Identity, tuple[str, str]] = {}
        parts = [part for _, part in asked.values()]
        verdicts = policy.judge_many(answers.values, parts, answers.epochs)
        for (identity, key_part), verdict, raw in zip(asked.items(), verdicts, answers.values, strict=True):
            if verdict is None:
                to_lease[identity] = key_part
            elif type(verdict) is list:
                hits.append(identity)
                rows.append(verdict)
            elif verdict is NO_ROW:
                self.place(identity, None)
            elif replaceable and isinstance(verdict, Unusable):
                to_lease[identity] = key_part
                self.replacing[identity] = raw
            elif verdict is BUSY:
                self.waiting[identity] = key_part  # another reader is filling it
            else:
                policy.missed()
                self.database[identity] = list(identity[1])
        if self.keeping is not None:
            near, started = self.keeping
            found = [
                (key, verdict)
                for (key, _), verdict in zip(asked.values(), verdicts, strict=True)
                if type(verdict) is list or verdict is NO_ROW
            ]
            if found:
                policy.near_keep(near, found, started)
        for identity, instance in zip(hits, policy.info.load_rows(self.session, rows), strict=True):
            self.place(identity, instance)
        return to_lease

    def wait_for_fills(self, policy: ReadPolicy) -> Flow[None]:
        """Single flight: the keys other readers are filling are served by those fills, if they
        come within ``lease_wait``; else they go to the SELECT, as keys this call leased when
        the other reader released them."""
        waiting, self.waiting = self.waiting, {}
        if policy.runtime.settings.lease_wait:
            keys, parts = [key for key, _ in waiting.values()], [part for _, part in waiting.values()]
            outcomes = yield from wait_for_fills(policy, keys, parts, policy.no_fill is None)
        else:
            outcomes = [(BUSY, None, None, None)] * len(waiting)
        hits: list[Identity] = []
        rows: list[list[Any]] = []
        for (identity, (key, part)), (verdict, _, epoch, lease) in zip(waiting.items(), outcomes, strict=True):
            if type(verdict) is list:
                hits.append(identity)
                rows.append(verdict)
            elif verdict is NO_ROW:
                self.place(identity, None)
            else:
                policy.missed()
                self.database[identity] = list(identity[1])
                if lease is not None:
                    self.leased[identity] = (key, part, lease, epoch)
                elif verdict is BUSY:
                    self.busy.append(identity)
        for identity, instance in zip(hits, policy.info.load_rows(self.session, rows), strict=True):
            self.place(identity, instance)

    def to_database(self, identities: Iterable[Identity]) -> None:
        for identity in identities:
            self.database[identity] = list(identity[1])

    def select(self, execution_options: Mapping[str, Any]) -> Database:
        """One SELECT for every identity that Redis did not answer."""
        columns = list(self.mapper.primary_key)
        pks = [tuple(pk) for pk in self.database.values()]
        criterion = columns[0].in_([pk[0] for pk in pks]) if len(columns) == 1 else sa.tuple_(*columns).in_(pks)
        statement: Any = select(self.entity).where(criterion)
        return Database(lambda session: session.exec(statement, execution_options=execution_options).all())

    def place_rows(self, instances: Iterable[Any]) -> None:
        """Place the rows the SELECT returned (absent ones stay ``None``)."""
        self.loaded = {sa.inspect(instance).identity_key: instance for instance in instances}
        for identity in self.database:
            self.place(identity, self.loaded.get(identity))

    def settlements(self, policy: ReadPolicy) -> tuple[list[Settlement], list[bytes | None]]:
        """What to do with each lease this call holds: publish the loaded row, by the rules of
        ``get()``, or release the key; with each lease's server lifetime. Counts why rows it
        does not publish are not."""
        for identity in (*self.unleased, *self.busy):
            if self.loaded.get(identity) is not None:
                policy.may_publish(BUSY if identity in self.busy else None)
        settlements: list[Settlement] = []
        epochs: list[bytes | None] = []
        for identity, (key, part, lease, epoch) in self.leased.items():
            value, ttl_ms = policy.settle_with(self.loaded.get(identity), part, epoch)
            settlements.append((key, lease, value, ttl_ms))
            epochs.append(epoch)
        return settlements, epochs


def _subset(answers: Any, asked: dict[Identity, Any], subset: dict[Identity, Any]) -> Answers:
    """The answers of ``subset``, out of those of ``asked``."""
    at = {identity: position for position, identity in enumerate(asked)}
    positions = [at[identity] for identity in subset]
    return Answers([answers.values[i] for i in positions], [answers.epochs[i] for i in positions])


def plan_many(
    session: Session, entity: type, idents: Iterable[Any], execution_options: Mapping[str, Any], *, asynchronous: bool
) -> Flow[list[Any]]:
    """The flow of one ``get_many()``: the rows in the order asked, ``None`` where there is none."""
    policy = ReadPolicy.begin(session, entity, {"execution_options": execution_options}, asynchronous=asynchronous)
    read = _ManyRead(session, entity, list(idents), policy)
    for position, ident in read.from_identity_map:
        read.results[position] = yield _get(entity, ident, execution_options)
    if policy is not None and read.cached:
        yield from read.ask_redis(policy)
    if read.database:
        read.place_rows((yield read.select(execution_options)))
    settlements, epochs = read.settlements(policy) if policy is not None else ([], [])
    if settlements and policy is not None:
        try:
            published = yield (policy.runtime.transport.settle_many, (settlements, epochs))
        except TransportError as exc:
            policy.redis_failed("fill", exc)
        else:
            stored = sum(published)
            policy.filled(stored, sum(value is not None for _, _, value, _ in settlements) - stored)
    return read.results
