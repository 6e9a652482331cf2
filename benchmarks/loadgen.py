"""The load generator of the end-to-end phase: wrk, a C program, with a Lua script for the ids.

On a machine of two cores the driver competes with the server for CPU; wrk's event loop in
C takes a small fraction of what a Python HTTP client would need for the same requests, so
the figures measure the server. wrk is a closed loop: each of its connections sends its next
request when the previous answer arrives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import BenchmarkError

SCRIPT = Path(__file__).resolve().parent / "products.lua"


class LoadGeneratorUnavailable(BenchmarkError):
    """wrk is not installed; the message says how to install it."""


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise LoadGeneratorUnavailable(
            "wrk is not installed; install Debian's wrk package (apt-get install wrk, or brew install wrk "
            "on macOS), or run `nox -s bench`, which installs it when run as root on Debian"
        )
    return binary


def wrk_version() -> str:
    result = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, check=False)
    words = (result.stdout or result.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


@dataclass(frozen=True)
class Load:
    """One wrk run against one server: what was answered, how fast, and what failed."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    # Responses whose status was not 2xx, and socket errors and timeouts (wrk's own counts).
    not_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return self.not_2xx + self.socket_errors


def run_wrk(port: int, rows: int, seconds: int, concurrency: int, sequential: bool = False) -> Load:
    """``GET /products/{id}`` on ``port`` for ``seconds``, ``concurrency`` connections on one thread.

    The ids are random over 1..``rows``, or in turn with ``sequential`` (a warm-up that
    touches every row once it has sent ``rows`` requests).
    """
    command = [
        wrk_binary(),
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(SCRIPT),
        f"http://127.0.0.1:{port}",
        "--",
        str(rows),
        *(["seq"] if sequential else []),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False, env={**os.environ, "LC_ALL": "C"}
    )
    summary = next((line for line in result.stdout.splitlines() if line.startswith("{")), None)
    if result.returncode != 0 or summary is None:
        raise BenchmarkError(f"wrk failed (exit code {result.returncode}): {result.stderr.strip() or result.stdout}")
    raw = json.loads(summary)
    return Load(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        not_2xx=raw["not_2xx"],
        socket_errors=sum(raw[kind] for kind in ("connect", "read", "write", "timeout")),
    )
