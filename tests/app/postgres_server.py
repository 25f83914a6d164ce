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


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL. Run as root, the server runs as the `postgres` account."""
    demote = _as_postgres_user if os.geteuid() == 0 else None
    folder = tempfile.mkdtemp(prefix="anastrozole-pg-", dir="/tmp")
    if demote:
        shutil.chown(folder, "postgres", "postgres")
    data = os.path.join(folder, "data")
    subprocess.run(
        [_binary("initdb"), "-D", data, "--auth=trust", "-U", "postgres", "-E", "UTF8"],
        check=True, capture_output=True, preexec_fn=demote, cwd=folder,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [_binary("postgres"), "-D", data, "-p", str(port), "-k", folder,
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=demote, cwd=folder,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=port, user="postgres", dbname="postgres"
                ):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """A new, empty database on the server of `url` (dropped first if it exists): its URL."""
    server = psycopg.conninfo.make_conninfo(url.replace("postgresql+psycopg://", "postgresql://"))
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"
