"""A throwaway PostgreSQL cluster on 127.0.0.1 for the store's tests (Debian's postgresql)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from sandbox.fhir_server import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is missing: run `make postgres` (apt-get install postgresql)"
        )
    return found


def _as_postgres_user() -> None:
    """In the child before exec: PostgreSQL refuses to run as root."""
    account = pwd.getpwnam("postgres")
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)


class PostgresServer:
    """A cluster in a temporary folder that can be stopped and started again on the same
    port with its data (a database outage and its end)."""

    def __init__(self) -> None:
        self.demote = _as_postgres_user if os.geteuid() == 0 else None
        self.folder = tempfile.mkdtemp(prefix="anastrozole-pg-", dir="/tmp")
        if self.demote:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = os.path.join(self.folder, "data")
        subprocess.run(
            [_binary("initdb"), "-D", self.data, "--auth=trust", "-U", "postgres", "-E", "UTF8"],
            check=True, capture_output=True, preexec_fn=self.demote, cwd=self.folder,
        )  # fmt: skip
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_binary("postgres"), "-D", self.data, "-p", str(self.port), "-k", self.folder,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=self.demote,
            cwd=self.folder,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
                ):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self, *, immediate: bool = False) -> None:
        if self.process is None:
            return
        # SIGINT: fast shutdown (what an outage looks like); SIGQUIT: immediate, data thrown away
        self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop(immediate=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """A PostgresServer, started; removed afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL. Run as root, the server runs as the `postgres` account."""
    with postgres_cluster() as server:
        yield server.url


def fresh_database(url: str, name: str) -> str:
    """A new, empty database on the server of `url` (dropped first if it exists): its URL."""
    server = psycopg.conninfo.make_conninfo(url.replace("postgresql+psycopg://", "postgresql://"))
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"
