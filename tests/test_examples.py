"""Every example runs, on the embedded default and on the real servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .servers import PostgresServer, RedisServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_demo(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        env={**env, "PYTHONWARNINGS": "error"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_on_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    out = run_demo(env)
    assert "cache: in-process fake Redis" in out
    assert "miss" in out and "hit" in out
    assert "get(Hero, 1).age == 31" in out
    assert "get(Hero, 2) is None" in out
    assert "hits=" in out and "redis_errors=0" in out
    assert "async get(Hero, 3)" in out and "async commit:   get(Hero, 3).age == 49" in out


def test_demo_on_real_servers(redis_proc: RedisServer, postgres_proc: PostgresServer) -> None:
    import os

    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=postgres_proc.port, user=postgres_proc.user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute("DROP DATABASE IF EXISTS demo")
        conn.execute("CREATE DATABASE demo")
    database_url = postgres_proc.url("psycopg").rsplit("/", 1)[0] + "/demo"
    env = {**os.environ, "REDIS_URL": redis_proc.url, "DATABASE_URL": database_url}
    out = run_demo(env)
    assert "cache: REDIS_URL" in out
    assert "postgresql+psycopg" in out
    assert "get(Hero, 1).age == 31" in out
    assert "redis_errors=0" in out
    assert "async commit:   get(Hero, 3).age == 49" in out
