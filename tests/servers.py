"""Real redis-server and PostgreSQL processes on free loopback ports, for tests and benchmarks.

Each server runs from the machine's installed binaries in a private temporary directory
and is stopped (and its directory removed) by the context manager that started it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PersistentRedis",
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "SentinelDeployment",
    "ServerUnavailable",
    "TlsRedis",
    "free_port",
    "persistent_redis",
    "postgres_server",
    "redis_cluster",
    "redis_server",
    "sentinel_deployment",
    "tls_redis",
]


class ServerUnavailable(RuntimeError):
    """A server binary is missing; the message says what to install."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before accepting connections")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not accept connections on port {port} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        _stop(self.process)

    def restart(self) -> None:
        self.kill()
        start = _start_cluster_node if (self.directory / f"nodes-{self.port}.conf").exists() else _start_redis_process
        self.process = start(self.port, self.directory)


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable(
            "redis-server is not installed; install Debian's redis-server package "
            "(apt-get install redis-server), or run the test command from README.rst, which does"
        )
    return binary


def _start_redis_process(port: int, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    """redis-server on loopback, without persistence, in ``directory``; ``extra`` options appended."""
    process = subprocess.Popen(
        [
            *(redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"),
            # A replica's full sync starts at once (Redis 7.0 waits 5 s by default).
            *("--repl-diskless-sync-delay", "0"),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, process, "redis-server")
    return process


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    """A redis-server on ``port`` (a free one by default), removed with its files on exit."""
    directory = Path(tempfile.mkdtemp(prefix="sqlmodel-cache-redis-"))
    port = port if port is not None else free_port()
    server = RedisServer(port=port, process=_start_redis_process(port, directory), directory=directory)
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PersistentRedis:
    """A redis-server that snapshots to RDB (and, with ``aof``, appends every write) in its
    own directory, as Debian's default configuration does: it can crash and come back."""

    port: int
    directory: Path
    options: tuple[str, ...]
    process: subprocess.Popen[bytes]
    save_point: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill9(self) -> None:
        """Crash: SIGKILL, so nothing after the last snapshot (or fsync) survives."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def backup(self) -> None:
        """Copy the data files as they are now: a backup, or what a crash leaves on disk (the
        writes after the last RDB snapshot, or the last second of an ``everysec`` AOF)."""
        self.save_point = self.directory.with_name(self.directory.name + "-backup")
        shutil.rmtree(self.save_point, ignore_errors=True)
        shutil.copytree(self.directory, self.save_point)

    def restore(self) -> None:
        """Crash, and put back the files of the last `backup`."""
        self.kill9()
        shutil.rmtree(self.directory)
        shutil.copytree(self.save_point, self.directory)

    def restart(self) -> None:
        """Start again from the same files, and wait until the data set is loaded."""
        import redis

        self.kill9()
        self.process = _start_redis_process(self.port, self.directory, *self.options)
        deadline = time.monotonic() + 30
        with redis.Redis(port=self.port) as client:
            while client.info("persistence").get("loading"):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not finish loading its data within 30 s")
                time.sleep(0.05)


@contextlib.contextmanager
def persistent_redis(aof: bool = False) -> Iterator[PersistentRedis]:
    """A redis-server with RDB snapshots (``SAVE`` writes one), and AOF ``everysec`` if asked."""
    directory = Path(tempfile.mkdtemp(prefix="sqlmodel-cache-persistent-"))
    options = ("--save", "3600 1", "--dbfilename", "dump.rdb")
    if aof:
        options += ("--appendonly", "yes", "--appendfsync", "everysec")
    port = free_port()
    server = PersistentRedis(port, directory, options, _start_redis_process(port, directory, *options))
    try:
        yield server
    finally:
        server.kill9()
        shutil.rmtree(directory, ignore_errors=True)
        if server.save_point is not None:
            shutil.rmtree(server.save_point, ignore_errors=True)


@dataclass
class TlsRedis:
    """A redis-server that speaks only TLS and wants a password."""

    port: int
    password: str
    ca_path: Path

    @property
    def url(self) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def tls_redis() -> Iterator[TlsRedis]:
    """redis-server with only a TLS port, a certificate of a CA made for it, and AUTH."""
    import trustme

    directory = Path(tempfile.mkdtemp(prefix="sqlmodel-cache-tls-"))
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    certificate.cert_chain_pems[0].write_to_path(str(cert_path))
    certificate.private_key_pem.write_to_path(str(key_path))
    port, password = free_port(), "s3cret-password"
    process = subprocess.Popen(
        [
            *(redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(cert_path), "--tls-key-file", str(key_path)),
            *("--tls-ca-cert-file", str(ca_path), "--tls-auth-clients", "no"),
            *("--requirepass", password, "--dir", str(directory), "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process, "redis-server (TLS)")
        yield TlsRedis(port, password, ca_path)
    finally:
        _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class SentinelDeployment:
    """A master, a replica of it and a Sentinel watching them, each its own redis-server."""

    servers: dict[int, subprocess.Popen[bytes]]  # by port: the master and the replica
    directory: Path
    sentinel_port: int
    sentinel: subprocess.Popen[bytes]
    name: str = "mymaster"

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.sentinel_port)]

    def master_port(self) -> int:
        import redis

        with redis.Redis(port=self.sentinel_port) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(self.name)
        return int(port)

    def wait_replica_synced(self, timeout: float = 30.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        master = self.master_port()
        while True:
            states = []
            for port in self.servers:
                if port != master and self.servers[port].poll() is None:
                    with redis.Redis(port=port) as replica:
                        states.append(replica.info("replication").get("master_link_status"))
            if states and all(state == "up" for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not sync with the master: {states}")
            time.sleep(0.1)

    def failover(self, timeout: float = 60.0, after_kill: Callable[[], None] | None = None) -> int:
        """Kill -9 the master and have Sentinel promote the replica at once; the new port.

        The promotion is asked for (``SENTINEL FAILOVER``) rather than left to Sentinel's
        failure detection, which is set far above any stall of a loaded machine: a master that
        only missed pings for a second would be "failed over" while alive, and clients still
        connected to it would go on writing there, a split brain no client can see (Redis
        documents that writes to such a master are lost). The deployment fails over when, and
        only when, a test kills its master.
        """
        import redis

        old = self.master_port()
        process = self.servers[old]
        process.kill()
        process.wait()
        if after_kill is not None:
            after_kill()
        deadline = time.monotonic() + timeout
        asked = 0.0
        while True:
            port = self.master_port()
            if port != old:
                with contextlib.suppress(redis.RedisError), redis.Redis(port=port) as master:
                    if master.role()[0] == b"master":
                        return port
            elif time.monotonic() - asked > 5.0:  # not asked yet, or that failover was aborted
                try:
                    with redis.Redis(port=self.sentinel_port) as sentinel:
                        sentinel.execute_command("SENTINEL", "FAILOVER", self.name)
                    asked = time.monotonic()
                except redis.ResponseError:
                    pass  # INPROG, or NOGOODSLAVE until Sentinel has seen the replica again
            if time.monotonic() > deadline:
                raise RuntimeError("Sentinel did not fail over within the deadline")
            time.sleep(0.1)

    def rejoin(self, port: int) -> None:
        """Start the dead server on ``port`` again, as a replica of the current master."""
        self.servers[port] = _start_redis_process(
            port, self.directory / str(port), "--replicaof", "127.0.0.1", str(self.master_port())
        )

    def pause(self, port: int) -> None:
        self.servers[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.servers[port].send_signal(signal.SIGCONT)


@contextlib.contextmanager
def sentinel_deployment() -> Iterator[SentinelDeployment]:
    """A master and a replica, and one Sentinel (quorum 1) that fails over when asked to
    (`SentinelDeployment.failover`), never on its own."""
    directory = Path(tempfile.mkdtemp(prefix="sqlmodel-cache-sentinel-"))
    servers: dict[int, subprocess.Popen[bytes]] = {}
    sentinel: subprocess.Popen[bytes] | None = None
    try:
        master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
        for port, extra in ((master_port, ()), (replica_port, ("--replicaof", "127.0.0.1", str(master_port)))):
            node_dir = directory / str(port)
            node_dir.mkdir()
            servers[port] = _start_redis_process(port, node_dir, *extra)
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndaemonize no\ndir {directory}\n"
            "sentinel resolve-hostnames no\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds mymaster 60000\n"
            "sentinel failover-timeout mymaster 3000\n"
            "sentinel parallel-syncs mymaster 1\n"
        )
        sentinel = subprocess.Popen(
            [redis_binary(), str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(sentinel_port, sentinel, "redis-sentinel")
        deployment = SentinelDeployment(servers, directory, sentinel_port, sentinel)
        deployment.wait_replica_synced()
        yield deployment
    finally:
        for process in [*servers.values(), *([sentinel] if sentinel is not None else [])]:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PostgresServer:
    port: int
    user: str
    database: str

    def url(self, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{self.user}@127.0.0.1:{self.port}/{self.database}"


def postgres_bindir() -> Path:
    candidates = [Path(p).parent for p in filter(None, [shutil.which("initdb")])]
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir.resolve()
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, postgres) were not found; install Debian's postgresql package"
    )


def _server_account() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerUnavailable("running as root and no 'postgres' or 'nobody' account to run PostgreSQL as")


def _wait_until_accepting_queries(server: PostgresServer, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, dbname=server.database) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    account = _server_account()
    directory = Path(tempfile.mkdtemp(prefix="sqlmodel-cache-pg-"))
    data, sockets = directory / "data", directory / "sock"
    sockets.mkdir()
    run_as: dict[str, int] = {}
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
        os.chown(sockets, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}  # type: ignore[dict-item]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    superuser = "sqlmodelcache"
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", superuser, "-A", "trust", "-E", "UTF8", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=directory,
        **run_as,  # type: ignore[arg-type]
    )
    port = free_port()
    process = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=directory,
        **run_as,  # type: ignore[arg-type]
    )
    try:
        _wait_for_port(port, process, "postgres")
        server = PostgresServer(port=port, user=superuser, database="postgres")
        _wait_until_accepting_queries(server)
        yield server
    finally:
        _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class RedisClusterServer:
    """A Redis Cluster of masters only, one redis-server per port."""

    nodes: list[RedisServer]

    @property
    def startup(self) -> tuple[str, int]:
        return "127.0.0.1", self.nodes[0].port

    def node_for(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def _nodes_view(self) -> list[list[str]]:
        """``CLUSTER NODES`` as a live node sees it: one list of fields per node."""
        import redis

        for node in self.nodes:
            if node.process.poll() is None:
                with contextlib.suppress(redis.RedisError), redis.Redis(port=node.port) as client:
                    text = client.execute_command("CLUSTER", "NODES")
                    text = text.decode() if isinstance(text, bytes) else str(text)
                    return [line.split() for line in text.splitlines() if line.strip()]
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[int]:
        """The ports of the masters that are not failed."""
        return [
            int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for fields in self._nodes_view()
            if "master" in fields[2] and "fail" not in fields[2]
        ]

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            replicas = [n for n in self.nodes if n.port not in self.masters()]
            states = []
            for node in replicas:
                with redis.Redis(port=node.port) as client:
                    states.append(client.info("replication").get("master_link_status"))
            if states and all(state == "up" for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster's replicas did not sync: {states}")
            time.sleep(0.1)

    def wait_failover(self, replica_port: int, timeout: float = 60.0) -> None:
        """Until the replica on ``replica_port`` of a killed master has taken over its slots."""
        import redis

        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError), redis.Redis(port=replica_port) as node:
                if node.role()[0] == b"master" and node.cluster("INFO").get("cluster_state") == "ok":
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica on {replica_port} did not take over within {timeout:.0f} s")
            time.sleep(0.2)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    import random

    for _ in range(1000):
        port = random.randint(20000, 50000)
        if _port_is_free(port) and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _start_cluster_node(port: int, directory: Path) -> subprocess.Popen[bytes]:
    return _start_redis_process(
        port,
        directory,
        *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
        *("--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"),
    )


def _cluster_ready(ports: list[int], timeout: float = 30.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        states = []
        for port in ports:
            with redis.Redis(port=port) as client:
                info = client.cluster("INFO")
                states.append(info.get("cluster_state") if isinstance(info, dict) else None)
        if all(state == "ok" for state in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Redis Cluster did not become ready: {states}")
        time.sleep(0.2)


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas: int = 0) -> Iterator[RedisClusterServer]:
    """Start ``masters`` cluster-enabled redis-servers, each with ``replicas`` replicas, and join
    them with ``redis-cli --cluster create``."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ServerUnavailable("redis-cli is not installed; install Debian's redis-server (or redis-tools) package")
    directory = Path(tempfile.mkdtemp(prefix="sqlmodel-cache-cluster-"))
    nodes: list[RedisServer] = []
    try:
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port()
            node_dir = directory / str(port)
            node_dir.mkdir()
            nodes.append(RedisServer(port=port, process=_start_cluster_node(port, node_dir), directory=node_dir))
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        _cluster_ready([n.port for n in nodes])
        cluster = RedisClusterServer(nodes=nodes)
        if replicas:
            cluster.wait_replicas_synced()
        yield cluster
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(directory, ignore_errors=True)
