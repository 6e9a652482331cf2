"""Cached reads as flows: owns the order of a ``get()``'s I/O steps, and the wait for another
reader's fill that ``get_many()`` (`_read_many`) shares.

Every decision is the policy's (`_policy`); these only sequence Redis and database steps, and
both sessions run them unchanged (`_flow`).

``get()``: one round trip for a hit, ``SET ... NX GET`` taking the lease on a miss, the
database, then one compare-and-set that settles the lease: publishes the row, or releases the
key when there is none. ``get_many()``: the identity map, one multi-key read
of every key (one MGET; one round trip per node on a cluster), leases for the misses in one
more, one ``SELECT ... WHERE pk IN (...)`` for what Redis did not have, and the fills in one
more.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy.orm import Mapper
from sqlalchemy.util import EMPTY_DICT
from sqlmodel import Session

from ._entry import NO_ROW, Unusable
from ._errors import TransportError
from ._eviction import deliver_kept
from ._flow import Answered, Database, Flow, Sleep
from ._lease import new_lease, new_leases, took_lease
from ._near import NearCache
from ._options import GetOptions
from ._policy import BUSY, ReadPolicy, Verdict
from ._stats import logger

__all__ = ["connection_for", "plan_get", "read_one", "wait_for_fills"]

Identity = tuple[Any, ...]


def connection_for(mapper: Mapper[Any]) -> Database:
    return Database(lambda session: session.connection(bind_arguments={"mapper": mapper}))


def plan_get(
    session: Session, entity: Any, ident: Any, options: GetOptions, *, asynchronous: bool
) -> Flow[Any] | Answered | None:
    """The flow of a ``get()`` through the cache (or its answer, when process memory has it),
    or ``None`` for the plain ``get()``."""
    policy = ReadPolicy.begin(session, entity, options, asynchronous=asynchronous)
    target = policy.target(ident) if policy is not None else None
    if policy is None or target is None:
        return None
    pk, key, part = target
    if policy.info.config.near and policy.log is None and not policy.runtime.evictions.pending:
        # A session that never wrote, nothing kept to evict: a near entry answers at once,
        # with no flow to run (the flow would find the same, at more cost).
        near = policy.near_cache()
        if near is not None and not policy.in_identity_map(pk):
            served = _near_served(policy, near, pk, key)
            if served is not _NOT_NEAR:
                return Answered(served)
    typed = pk[0] if len(pk) == 1 else tuple(pk)  # one row, one identity, whatever form was asked
    execution_options = options.get("execution_options", EMPTY_DICT)
    bind_arguments: Any = options.get("bind_arguments")  # only `CachedSession.get` has them
    from_database = Database(
        lambda session: Session.get(
            session, entity, typed, execution_options=execution_options, bind_arguments=bind_arguments
        )
    )
    return read_one(policy, pk, key, part, from_database)


def read_one(policy: ReadPolicy, pk: list[Any] | None, key: str, part: str, from_database: Database) -> Flow[Any]:
    """One read of a cacheable key: of a primary key ``pk``, or (``pk=None``) of a unique
    lookup, whose row may turn out to be in the identity map already."""
    runtime = policy.runtime
    if runtime.evictions.pending:
        yield from deliver_kept(runtime)
    if (pk is not None and policy.in_identity_map(pk)) or not policy.cache_may_answer(key):
        return (yield from_database)  # Session.get answers from the identity map, or only the database may
    near = policy.near_cache()
    if near is not None:
        served = _near_served(policy, near, pk, key)
        if served is not _NOT_NEAR:
            return (yield served) if type(served) is Database else served
        started = near.started()
    if policy.needs_connection_check:
        policy.check_connection((yield connection_for(policy.info.mapper)))
    transport = runtime.transport
    lease_ms = runtime.settings.lease_ms
    # A reader that may not publish only peeks: it never holds a lease that would keep
    # other readers from filling.
    lease = new_lease() if policy.no_fill is None else None
    try:
        if lease is not None:
            answer = yield (transport.lookup, (key, lease, lease_ms))
        else:
            answer = yield (transport.peek, (key,))
    except TransportError as exc:
        policy.redis_failed("lookup", exc)
        policy.missed()
        return (yield from_database)
    raw, epoch = answer
    verdict = policy.judge(raw, part, epoch)
    if type(verdict) is list or verdict is NO_ROW:
        logger.debug("hit %s", key)
        if near is not None:
            policy.near_keep(near, [(key, verdict)], started)
        served = _served(policy, pk, verdict)
        return (yield served) if type(served) is Database else served
    held = lease is not None and raw is None  # SET ... NX took the lease
    if verdict is BUSY and runtime.settings.lease_wait:
        # Single flight: another reader is filling this row; its fill is served, not a SELECT.
        [(verdict, raw, epoch, taken)] = yield from wait_for_fills(policy, [key], [part], lease is not None)
        if type(verdict) is list or verdict is NO_ROW:
            served = _served(policy, pk, verdict)
            return (yield served) if type(served) is Database else served
        held, lease = taken is not None, taken
    policy.missed()
    if lease is not None and isinstance(verdict, Unusable):
        # Replace what no reader may serve at once: a lease over exactly the bytes found.
        found = raw
        try:
            raw, epoch = yield (transport.lease_over, (key, found, lease, lease_ms))
        except TransportError as exc:
            policy.redis_failed("lookup", exc)
        else:
            held = epoch is not None and took_lease(found, raw)
            verdict = None if held else verdict
    loaded = yield from_database
    if not held:
        if loaded is not None:
            policy.may_publish(verdict)  # counts why it is not published
        return loaded
    # Settle the lease: publish the row (or that there is none), or release the key.
    value, ttl_ms = policy.settle_with(loaded, part, epoch)
    try:
        published = yield (transport.settle, (key, lease, value, ttl_ms, epoch))
    except TransportError as exc:
        policy.redis_failed("fill", exc)
    else:
        if value is not None:
            policy.filled(int(published), int(not published))
            logger.debug("filled %s" if published else "lease lost, not filled: %s", key)
    return loaded


# What `_near_served` gives when the near cache has no entry for the key.
_NOT_NEAR: Final = object()


def _near_served(policy: ReadPolicy, near: NearCache, pk: list[Any] | None, key: str) -> Any:
    """`_served` for the near entry of ``key``, or `_NOT_NEAR`."""
    verdict = near.get(key)
    if verdict is None:
        return _NOT_NEAR
    return _served(policy, pk, policy.near_hit(verdict))


def _served(policy: ReadPolicy, pk: list[Any] | None, verdict: Any) -> Any:
    """A hit's row for the session (``None`` for a negative entry), or, for a unique lookup's
    row that the session holds already, the step that answers it as ``Session.get`` does."""
    if verdict is NO_ROW:
        return None
    if pk is None and (in_session := policy.in_session(verdict)) is not None:
        return in_session
    return policy.info.load_into(policy.session, verdict)


# A waited key's outcome: its verdict, what it held, the lifetime that said so, and the lease
# this reader took there meanwhile (``None`` if none).
Waited = tuple[Verdict, "bytes | None", "bytes | None", "bytes | None"]


def wait_for_fills(policy: ReadPolicy, keys: list[str], parts: list[str], may_fill: bool) -> Flow[list[Waited]]:
    """Wait up to ``lease_wait`` for other readers' fills of ``keys``; what each holds then.

    A reader that may fill asks with leases of its own, so that a key the other reader
    released (no row, a lost lease, an eviction) becomes this reader's to fill, in the same
    command. The holder's lease was taken after every eviction that came before this reader,
    so its fill is never older than a commit that finished before this reader started.
    """
    runtime = policy.runtime
    transport, counters = runtime.transport, runtime.counters
    counters.lease_waits += len(keys)
    outcomes: list[Waited] = [(BUSY, None, None, None)] * len(keys)
    waiting = list(range(len(keys)))
    deadline = time.monotonic() + runtime.settings.lease_wait
    pause = _FIRST_PAUSE
    while waiting and (left := deadline - time.monotonic()) > 0:
        yield Sleep(min(pause, left))
        pause = min(2 * pause, _LONGEST_PAUSE)
        asked = [keys[i] for i in waiting]
        leases: list[bytes | None] = [*new_leases(len(asked))] if may_fill else [None] * len(asked)
        try:
            if may_fill:
                lookup = (asked, leases, [None] * len(asked), runtime.settings.lease_ms)
                answers = yield (transport.lookup_many, lookup)
            else:
                answers = yield (transport.peek_many, (asked,))
        except TransportError as exc:
            policy.redis_failed("lookup", exc)
            break
        verdicts = policy.judge_many(answers.values, [parts[i] for i in waiting], answers.epochs)
        still = []
        for i, verdict, raw, epoch, lease in zip(
            waiting, verdicts, answers.values, answers.epochs, leases, strict=True
        ):
            if verdict is BUSY:
                still.append(i)
                continue
            if type(verdict) is list or verdict is NO_ROW:
                counters.lease_wait_hits += 1
            held = lease if verdict is None and epoch is not None else None
            outcomes[i] = (verdict, raw, epoch, held)
        waiting = still
    if waiting:
        logger.debug("no fill of %d keys within lease_wait: reading the database", len(waiting))
    return outcomes


# How often a waiting reader looks again: soon at first (a fill takes one SELECT), then less.
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.01
