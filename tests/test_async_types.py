"""Invariant 5 through AsyncCachedSession, on asyncpg and aiosqlite with the real redis-server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from sqlmodel_cache import AsyncCachedSession, CacheStats

from .models import AllTypes
from .test_codec import assert_identical
from .test_types import COLUMNS, ROWS


def columns_of(obj: Any) -> dict[str, Any]:
    assert obj is not None
    return {key: obj.__dict__[key] for key in COLUMNS}


def same_as_database(hit: dict[str, Any], database: dict[str, Any]) -> None:
    """As `assert_identical`, but asyncpg's own uuid.UUID subclass reads back as uuid.UUID."""
    for key, expected in database.items():
        if isinstance(expected, uuid.UUID) and type(expected) is not uuid.UUID:
            assert type(hit[key]) is uuid.UUID and hit[key] == expected, key
        else:
            assert_identical(hit[key], expected, key)


@pytest.mark.parametrize("name", list(ROWS))
async def test_async_hit_gives_every_column_the_database_value(
    async_engine: AsyncEngine, async_cache: Any, stats: CacheStats, name: str
) -> None:
    async with AsyncSession(async_engine) as session:
        session.add_all(AllTypes(**values) for values in ROWS.values())
        await session.commit()
    pk = ROWS[name]["id"]
    async with AsyncSession(async_engine) as session:
        from_database = columns_of(await session.get(AllTypes, pk))
    async with AsyncCachedSession(async_engine) as session:
        from_miss = columns_of(await session.get(AllTypes, pk))
    async with AsyncCachedSession(async_engine) as session:
        from_hit = columns_of(await session.get(AllTypes, pk))
    assert (stats.hits, stats.fills) == (1, 1)
    assert_identical(from_miss, from_database, "miss")
    same_as_database(from_hit, from_database)
