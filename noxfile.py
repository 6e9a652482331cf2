"""Project tasks. ``nox`` with no arguments runs what CI runs: lint, typecheck and the tests.

The test sessions need a real redis-server and the PostgreSQL server binaries; the fixtures
start both themselves. A missing redis-server (or wrk, the load generator of the end-to-end
benchmark) is installed with apt-get when running as root on Debian; otherwise the session
stops and says what to install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
SQLALCHEMY_SERIES = {"2.0": "sqlalchemy[asyncio]>=2.0.14,<2.1", "2.1": "sqlalchemy[asyncio]>=2.1,<2.2"}


def ensure_tool(session: nox.Session, binary: str, package: str, missing: str) -> None:
    """``binary`` on the PATH: installed from Debian's ``package`` as root, else stop saying ``missing``."""
    if shutil.which(binary):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.log(f"{binary} is missing: installing Debian's {package} package")
        session.run("apt-get", "update", "-qq", external=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            package,
            external=True,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
        return
    session.error(missing)


def ensure_redis_server(session: nox.Session) -> None:
    ensure_tool(
        session,
        "redis-server",
        "redis-server",
        "redis-server (7.0 or newer) is not installed. Install it, e.g. `sudo apt-get install "
        "redis-server` on Debian/Ubuntu or `brew install redis` on macOS, then run nox again.",
    )


def ensure_wrk(session: nox.Session) -> None:
    """The HTTP load generator of the end-to-end benchmark (and of its smoke test)."""
    ensure_tool(
        session,
        "wrk",
        "wrk",
        "wrk is not installed. Install it, e.g. `sudo apt-get install wrk` on Debian/Ubuntu or "
        "`brew install wrk` on macOS, then run nox again.",
    )


@nox.session(python=PYTHON)
@nox.parametrize("sqlalchemy", list(SQLALCHEMY_SERIES))
def tests(session: nox.Session, sqlalchemy: str) -> None:
    """The whole test suite against real redis-server and PostgreSQL processes."""
    ensure_redis_server(session)
    ensure_wrk(session)
    session.install("-e", ".[test]", SQLALCHEMY_SERIES[sqlalchemy])
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.11", "msgpack-types>=0.5")
    session.run("mypy")
    session.run("mypy", "--strict", "examples", "benchmarks")
    # The documentation's samples, as printed: redis-py's Sentinel client has no annotations.
    session.run(
        "mypy", "--strict", "--allow-untyped-calls", "--follow-imports=silent", "--explicit-package-bases", "docs_src"
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (a broken link, include or reference fails) into a temporary dir."""
    session.install("-e", ".[docs]")
    site = Path(session.create_tmp()) / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"}
    )
    session.log(f"site built in {site}")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The demo: SQLite plus in-process fake Redis unless DATABASE_URL / REDIS_URL are set."""
    session.install("-e", ".[demo]")
    session.run("python", "examples/demo.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark against the performance targets, on real redis-server and PostgreSQL processes.

    ``nox -s bench -- --e2e`` adds the end-to-end phase (the FastAPI example under uvicorn and wrk).
    """
    ensure_redis_server(session)
    ensure_wrk(session)
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
