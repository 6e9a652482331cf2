"""Project tasks. ``nox`` with no arguments runs what CI runs: lint, typecheck, the
documentation build, the release check and the test matrix.

The test sessions need a real redis-server and the PostgreSQL server binaries; the fixtures
start both themselves. A missing redis-server (or wrk, the load generator of the end-to-end
benchmark) is installed with apt-get when running as root on Debian; otherwise the session
stops and says what to install.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "release", "tests"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
# The supported Pythons are the ones installed here; a missing one fails the run (above),
# it is never replaced by a downloaded build.
nox.options.download_python = "never"

PYTHON = "3.11"
SQLALCHEMY_SERIES = {"2.0": "sqlalchemy[asyncio]>=2.0.14,<2.1", "2.1": "sqlalchemy[asyncio]>=2.1,<2.2"}
# Every supported Python runs the whole suite, with one SQLAlchemy series each: each series on
# two Pythons, the oldest and the newest on different series. pyproject.toml's classifiers list
# exactly these Pythons.
MATRIX = [("3.10", "2.0"), ("3.11", "2.1"), ("3.12", "2.0"), ("3.13", "2.1")]
# The timed chaos tests (test_fault_matrix.py, test_stress.py: 6.5 of a session's 10.5 minutes
# in CI) run their full CI length on the newest Python only; the other sessions run every
# scenario for its local length, which still sees every kind of fault more than once. Full
# length on one session per SQLAlchemy series would take CI from about 31 to 36 minutes.
FULL_CHAOS_PYTHONS = {"3.13"}
SHORT_CHAOS = {"FAULT_SECONDS": "8", "STRESS_SECONDS": "6"}


def find_installed_pythons(versions: list[str]) -> None:
    """Pythons that pyenv installed but did not activate (its shims refuse those): put each
    wanted version's interpreter on the PATH, ahead of the shims, so that nox finds it."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    links = Path(__file__).resolve().parent / ".nox" / "pythons"
    found = False
    for version in versions:
        installed = [path for path in root.glob(f"{version}.*/bin/python{version}") if path.is_file()]
        if not installed:
            continue  # elsewhere on the PATH, or missing: then the run fails, it never skips
        newest = max(installed, key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()])
        links.mkdir(parents=True, exist_ok=True)
        link = links / f"python{version}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(newest)
        found = True
    if found:
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


find_installed_pythons(sorted({python for python, _ in MATRIX} | {PYTHON}))

VERSION_CHECK = (
    "import importlib.metadata, sqlmodel_cache; version = importlib.metadata.version('sqlmodel-cache'); "
    "assert sqlmodel_cache.__version__ == version, (sqlmodel_cache.__version__, version); "
    "print('sqlmodel-cache', version)"
)


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


@nox.session
@nox.parametrize(("python", "sqlalchemy"), MATRIX)
def tests(session: nox.Session, sqlalchemy: str) -> None:
    """The whole test suite against real redis-server and PostgreSQL processes."""
    ensure_redis_server(session)
    ensure_wrk(session)
    session.install("-e", ".[test]", SQLALCHEMY_SERIES[sqlalchemy])
    env = {}
    if session.python not in FULL_CHAOS_PYTHONS:
        env = {name: os.environ.get(name, seconds) for name, seconds in SHORT_CHAOS.items()}
    session.run("python", "-m", "pytest", *session.posargs, env=env)


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


@nox.session(python=PYTHON)
def release(session: nox.Session) -> None:
    """The distributions as a user gets them: built, checked, installed outside the checkout.

    ``python -m build`` makes the sdist and then the wheel from that sdist, so the sdist is
    known to be complete. The wheel goes into a fresh venv in a temporary directory, where
    the demo runs against the installed package, never the source tree.
    """
    session.install("build>=1.2", "twine>=5")
    checkout = Path.cwd().resolve()
    with tempfile.TemporaryDirectory(prefix="sqlmodel-cache-release-") as scratch:
        root = Path(scratch).resolve()
        dist = root / "dist"
        session.run("python", "-m", "build", "--outdir", str(dist))
        sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            session.error(f"expected one sdist and one wheel, found {[p.name for p in dist.iterdir()]}")
        session.run("twine", "check", "--strict", str(sdists[0]), str(wheels[0]))
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = wheel.namelist()
        tops = {name.split("/")[0] for name in names}
        stray = {top for top in tops if top != "sqlmodel_cache" and not top.endswith(".dist-info")}
        if stray or "sqlmodel_cache/py.typed" not in names:
            session.error(f"the wheel should hold the package, its py.typed and its metadata; also found {stray}")

        venv = root / "venv"
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "--quiet", f"{wheels[0]}[demo]", external=True)
        demo = shutil.copy(checkout / "examples" / "demo.py", root / "demo.py")
        session.chdir(root)
        # -I: no PYTHONPATH, no current directory, no user site: only what the venv installed.
        where = session.run(
            python, "-I", "-c", "import sqlmodel_cache; print(sqlmodel_cache.__file__)", external=True, silent=True
        )
        location = Path(str(where).strip()).resolve()
        if not location.is_relative_to(venv) or location.is_relative_to(checkout):
            session.error(f"sqlmodel_cache came from {location}, not from the fresh venv outside the checkout")
        session.log(f"sqlmodel_cache imported from {location}")
        session.run(python, "-I", "-c", VERSION_CHECK, external=True)
        session.run(python, "-I", demo, external=True, env={"REDIS_URL": "", "DATABASE_URL": ""})
        session.chdir(checkout)
