"""Write tracking: owns what a session's transaction wrote, and its eviction when (and only
when) it commits.

The listeners are registered on our own session classes only, so they fire for cached
sessions and never for a plain ``Session``. Keys are recorded per transaction boundary
(the root transaction or a savepoint): a released savepoint hands its keys to its parent,
a rolled-back one drops them, and the root hands everything to the evictor after the
database commit has succeeded: ``commit()``, ``with session.begin():`` and
``sessionmaker.begin()`` all end there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.orm.state import InstanceState

from ._bulk import track_statement
from ._eviction import deliver, keys_of_states
from ._flow import call_blocking, call_in_greenlet, run
from ._keys import KeyScheme
from ._lookups import lookup_keys_of_flush, remember_old_values
from ._runtime import active, keep_undeliverable
from ._stats import logger

__all__ = ["WriteLog", "install_write_tracking", "peek_write_log", "write_log"]


@dataclass(slots=True)
class WriteLog:
    """One session's record of the current root transaction's writes."""

    # Set by any flush: from then on nothing this transaction reads is published.
    has_writes: bool = False
    # Keys this transaction changed: never read from the cache until it ends.
    written_keys: set[str] = field(default_factory=set)
    # Models changed by bulk statements: none of their rows is read from the cache until
    # the transaction ends (the statement may have touched rows we cannot name).
    bulk_changed: set[type] = field(default_factory=set)
    # Keys to evict, per open transaction boundary, and the key scheme they were made in.
    pending: dict[SessionTransaction, set[str]] = field(default_factory=dict)
    scheme: KeyScheme | None = None
    # The unique-lookup values of the rows a flush is about to change, taken just before it.
    old_lookup_values: dict[InstanceState[Any], Mapping[str, Any]] = field(default_factory=dict)

    def clear(self) -> None:
        self.has_writes = False
        self.scheme = None
        self.written_keys.clear()
        self.bulk_changed.clear()
        self.pending.clear()
        self.old_lookup_values.clear()


_LOG_ATTRIBUTE = "_sqlmodel_cache_write_log"


def peek_write_log(session: Session) -> WriteLog | None:
    """The session's log if it ever wrote; no allocation on the read-only hot path."""
    return session.__dict__.get(_LOG_ATTRIBUTE)


def write_log(session: Session) -> WriteLog:
    log: WriteLog | None = session.__dict__.get(_LOG_ATTRIBUTE)
    if log is None:
        log = session.__dict__[_LOG_ATTRIBUTE] = WriteLog()
    return log


def _boundary(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _parent_boundary(transaction: SessionTransaction) -> SessionTransaction | None:
    parent = transaction.parent
    while parent is not None and not parent.nested and parent.parent is not None:
        parent = parent.parent
    return parent


def record_writes(
    session: Session, keys: set[str], scheme: KeyScheme | None = None, bulk_model: type | None = None
) -> None:
    """Note that the current transaction wrote: no more fills, and ``keys`` go at commit."""
    log = write_log(session)
    log.has_writes = True
    if bulk_model is not None:
        log.bulk_changed.add(bulk_model)
    if not keys:
        return
    log.scheme = scheme
    log.written_keys.update(keys)
    boundary = _boundary(session)
    if boundary is not None:
        log.pending.setdefault(boundary, set()).update(keys)


def evict(session: Session, keys: list[str], scheme: KeyScheme, asynchronous: bool) -> None:
    """Deliver a commit's evictions with the session's own kind of I/O; keep what cannot go."""
    runtime = active()
    if runtime is None or runtime.transport.is_async is not asynchronous:
        logger.error(
            "cannot evict %d keys now: this session needs a configured %s; they are kept for later",
            len(keys),
            "RedisAsyncTransport" if asynchronous else "RedisSyncTransport",
        )
        keep_undeliverable(keys, scheme)
        return
    run(deliver(runtime, keys), None, call_in_greenlet if asynchronous else call_blocking)


def install_write_tracking(session_cls: type[Session], *, asynchronous: bool) -> None:
    """Attach write tracking to ``session_cls`` (and only it); a root commit evicts what it wrote.

    ``asynchronous``: the session runs inside an `AsyncCachedSession`'s greenlet and evicts by
    awaiting the asyncio transport there.
    """

    def before_flush(session: Session, flush_context: Any, instances: Any) -> None:
        log = peek_write_log(session)
        remembered: dict[InstanceState[Any], Mapping[str, Any]] = log.old_lookup_values if log is not None else {}
        remember_old_values(session, remembered)
        if remembered and log is None:
            write_log(session).old_lookup_values.update(remembered)

    def after_flush(session: Session, flush_context: Any) -> None:
        flushed = [(state, deleted) for state, (deleted, listonly) in flush_context.states.items() if not listonly]
        runtime = active()
        if runtime is None:
            record_writes(session, set())
            return
        keys = keys_of_states(runtime, [state for state, _ in flushed])
        log = peek_write_log(session)
        remembered = log.old_lookup_values if log is not None else {}
        lookup_keys, unnamed = lookup_keys_of_flush(session, runtime, flushed, remembered)
        remembered.clear()
        record_writes(session, keys | lookup_keys, runtime.keys)
        for model in unnamed:  # rows it cannot name: none of the model's is read until the end
            record_writes(session, set(), None, model)

    def do_orm_execute(orm_execute_state: ORMExecuteState) -> Any:
        return track_statement(orm_execute_state, record_writes)

    def after_commit(session: Session) -> None:
        log = peek_write_log(session)
        if log is None:
            return
        nested = session.get_nested_transaction()
        if nested is not None:  # a savepoint was released: its keys wait for the outer commit
            keys = log.pending.pop(nested, None)
            parent = _parent_boundary(nested)
            if keys and parent is not None:
                log.pending.setdefault(parent, set()).update(keys)
            return
        keys_to_evict: set[str] = set()
        for keys in log.pending.values():
            keys_to_evict.update(keys)
        scheme = log.scheme
        log.clear()
        if keys_to_evict and scheme is not None:
            evict(session, sorted(keys_to_evict), scheme, asynchronous)

    def after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
        log = peek_write_log(session)
        if log is None:
            return
        if previous_transaction.parent is None:
            log.clear()
        else:
            log.pending.pop(previous_transaction, None)

    def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
        log = peek_write_log(session)
        if log is not None and transaction.parent is None:
            log.clear()

    event.listen(session_cls, "before_flush", before_flush)
    event.listen(session_cls, "after_flush", after_flush)
    event.listen(session_cls, "do_orm_execute", do_orm_execute)
    event.listen(session_cls, "after_commit", after_commit)
    event.listen(session_cls, "after_soft_rollback", after_soft_rollback)
    event.listen(session_cls, "after_transaction_end", after_transaction_end)
