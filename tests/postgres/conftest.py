"""A throwaway PostgreSQL cluster for the whole session, started by the tests themselves.

initdb + pg_ctl from PAYOPS_PG_BINDIR, /usr/local/bin or `pg_config --bindir`, in a
temporary directory, on a free loopback port, with durability switched off (fsync)
because the cluster is thrown away. As root (containers, CI) the server runs as the
`postgres` user, since PostgreSQL refuses to run as root. Every test gets a fresh
database cloned from a template that `payops db upgrade`'s code migrated once.
Tests here skip, with the reason, where the binaries or the drivers are missing.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres

TEMPLATE_DB = "payops_template"
START_TIMEOUT_SECONDS = 30


def _bindir() -> Path | None:
    candidates = [os.environ.get("PAYOPS_PG_BINDIR"), "/usr/local/bin"]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(found.stdout.strip())
    for folder in candidates:
        if folder and all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    user: str = "payops_test"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(statement)


def _as_server_user(cmd: list[str]) -> tuple[list[str], str | None]:
    """PostgreSQL will not run as root: drop to the `postgres` account when we are root."""
    if os.geteuid() != 0:
        return cmd, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
    runuser = shutil.which("runuser") or shutil.which("setpriv")
    if runuser is None:
        pytest.skip("running as root without runuser/setpriv to start PostgreSQL as another user")
    if runuser.endswith("runuser"):
        return [runuser, "-u", "postgres", "--", *cmd], "postgres"
    return [runuser, "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd], "postgres"


def _run(cmd: list[str], log: Path | None = None) -> None:
    wrapped, _ = _as_server_user(cmd)
    done = subprocess.run(wrapped, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}")


@pytest.fixture(scope="session")
def pg_cluster():
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install -e '.[test]')")
    pytest.importorskip("langgraph.checkpoint.postgres", reason="PostgreSQL tests need langgraph-checkpoint-postgres")
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in PAYOPS_PG_BINDIR, "
                    "/usr/local/bin or `pg_config --bindir`")
    _, server_user = _as_server_user([])
    # The server's user must reach its directory: as root, avoid a TMPDIR only root can enter.
    root = Path(tempfile.mkdtemp(prefix="payops-pg-", dir="/tmp" if server_user and Path("/tmp").is_dir() else None))
    if server_user is not None:
        shutil.chown(root, user=server_user)
    data, log = root / "data", root / "server.log"
    cluster = None
    for attempt in range(3):  # a port taken between choosing and binding: choose again
        port = _free_port()
        try:
            if not data.exists():
                _run([str(bindir / "initdb"), "-D", str(data), "-U", "payops_test", "--auth=trust", "--no-sync",
                      "-E", "UTF8", "--locale=C"])
            options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB")
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT_SECONDS),
                  "-o", options, "start"], log)
            cluster = Cluster(bindir, root, port)
            break
        except RuntimeError:
            if attempt == 2:
                shutil.rmtree(root, ignore_errors=True)
                raise
    assert cluster is not None

    def interrupted(signum, frame):  # a `timeout` or CI cancel: unwind, so the teardown below stops the server
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        cluster.sql(f"CREATE DATABASE {TEMPLATE_DB}")
        from payops.storage import migrations

        migrations.upgrade(cluster.dsn(TEMPLATE_DB))
        yield cluster
    finally:
        signal.signal(signal.SIGTERM, previous)
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])[0],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


_numbers = itertools.count(1)


@pytest.fixture
def pg_dsn(pg_cluster) -> str:
    """A fresh, migrated database for one test (a clone of the template: ~0.1 s)."""
    name = f"t{os.getpid()}_{next(_numbers)}"
    pg_cluster.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return pg_cluster.dsn(name)


@pytest.fixture
def empty_pg_dsn(pg_cluster) -> str:
    """A database with no payops schema at all."""
    name = f"e{os.getpid()}_{next(_numbers)}"
    pg_cluster.sql(f"CREATE DATABASE {name}")
    return pg_cluster.dsn(name)

