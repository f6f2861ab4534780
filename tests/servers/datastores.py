"""A private PostgreSQL cluster and a private Redis server on 127.0.0.1, from Debian's packages.

Both live in a run folder that the caller owns and removes; nothing touches the system's
own clusters or services.

Limitations: PostgreSQL runs with ``fsync=off`` (a crash loses the throwaway data) and
Redis without persistence or a password; both suit tests only.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from . import debian
from .base import ServerProcess, ServerUnavailable, free_port, user_options

#: Where Debian's postgresql-NN packages put their programs.
POSTGRES_LIB = Path("/usr/lib/postgresql")

#: Seconds PostgreSQL or Redis may take to accept connections.
READY_TIMEOUT_S = 60.0

#: Seconds one PostgreSQL tool (initdb, createdb) may take.
TOOL_TIMEOUT_S = 120.0


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's ``bin`` folder, or the one of ``initdb`` on PATH."""
    versions: list[tuple[int, Path]] = []
    if POSTGRES_LIB.is_dir():
        for folder in POSTGRES_LIB.iterdir():
            if re.fullmatch(r"\d+", folder.name) and (folder / "bin" / "initdb").is_file():
                versions.append((int(folder.name), folder / "bin"))
    if versions:
        return max(versions)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_installed() -> None:
    """Installs Debian's ``postgresql`` and ``redis-server`` when their programs are missing.

    Raises:
        ServerUnavailable: they are missing and cannot be installed.
    """
    debian.ensure_packages(
        {
            "postgresql": lambda: postgres_bin() is not None,
            "redis-server": lambda: shutil.which("redis-server") is not None,
        }
    )


def _run_tool(
    command: list[str], user: str | None, env: Mapping[str, str], what: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=TOOL_TIMEOUT_S,
        check=False,
        **user_options(user),
    )
    if result.returncode != 0:
        raise ServerUnavailable(
            f"{what} exited with status {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def _wait_for_port(process: ServerProcess, port: int, probe: bytes, answer: bytes) -> None:
    """Waits until 127.0.0.1:``port`` answers ``probe`` with ``answer`` (empty: accepts)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not process.running:
            raise process.fail(f"exited with status {process.popen.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
                if not probe:
                    return
                connection.sendall(probe)
                if connection.recv(64).startswith(answer):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise process.fail(f"not accepting connections on port {port} within {READY_TIMEOUT_S:.0f}s")


class PostgresCluster:
    """A throwaway PostgreSQL cluster: ``initdb`` in ``run_dir``, TCP on 127.0.0.1 only.

    Args:
        run_dir: an empty folder the cluster may fill (owned by ``user`` when given).
        log: the server's log file.
        user: the system user to run as (PostgreSQL refuses root); None for ourselves.
        superuser: name of the cluster's superuser, who logs in with ``password``.
        password: the superuser's password for TCP logins (scram-sha-256).
    """

    def __init__(
        self, run_dir: Path, log: Path, user: str | None, superuser: str, password: str
    ) -> None:
        self.run_dir = run_dir
        self.log = log
        self.user = user
        self.superuser = superuser
        self.password = password
        self.port = 0
        self.process: ServerProcess | None = None
        found = postgres_bin()
        if found is None:
            raise ServerUnavailable("PostgreSQL is not installed: apt-get install postgresql")
        self.bin = found
        self.env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"}

    @property
    def socket_dir(self) -> Path:
        """The folder of the Unix socket, which only the cluster's user can use."""
        return self.run_dir / "socket"

    def start(self) -> None:
        """Creates the cluster and starts it; returns once it accepts connections.

        Raises:
            ServerUnavailable: initdb failed or the server did not come up.
        """
        data = self.run_dir / "data"
        password_file = self.run_dir / "superuser-password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self.user is not None:
            shutil.chown(password_file, self.user, self.user)
            shutil.chown(self.socket_dir, self.user, self.user)
        _run_tool(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                self.superuser,
                "--pwfile",
                str(password_file),
                # The socket folder is private to the cluster's user, so trust is safe there.
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            self.user,
            self.env,
            "initdb",
        )
        password_file.unlink()

        self.port = free_port()
        # Speed over durability: the cluster lives as long as one test session.
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "50",
        }
        command = [str(self.bin / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self.process = ServerProcess(
            "PostgreSQL", command, self.log, self.env, stdin_pipe=False, user=self.user
        )
        _wait_for_port(self.process, self.port, b"", b"")
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        command = [
            str(self.bin / "pg_isready"),
            "--host",
            str(self.socket_dir),
            "--port",
            str(self.port),
            "--username",
            self.superuser,
        ]
        while time.monotonic() < deadline:
            if not self.process.running:
                raise self.process.fail("exited while starting")
            ready = subprocess.run(
                command, capture_output=True, env=self.env, check=False, **user_options(self.user)
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise self.process.fail(f"not ready within {READY_TIMEOUT_S:.0f}s")

    def create_database(self, name: str) -> str:
        """Creates database ``name``; returns its SQLAlchemy URL for TCP logins."""
        _run_tool(
            [
                str(self.bin / "createdb"),
                "--host",
                str(self.socket_dir),
                "--port",
                str(self.port),
                "--username",
                self.superuser,
                name,
            ],
            self.user,
            self.env,
            "createdb",
        )
        return f"postgresql://{self.superuser}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stops the server (its process group); the caller removes the run folder."""
        if self.process is not None:
            self.process.stop()
            self.process = None


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 with persistence off.

    Args:
        run_dir: its working folder (writable by ``user``).
        log: the server's log file.
        user: the system user to run as; None for ourselves.
    """

    def __init__(self, run_dir: Path, log: Path, user: str | None) -> None:
        self.run_dir = run_dir
        self.log = log
        self.user = user
        self.port = 0
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Starts the server; returns once it answers PING.

        Raises:
            ServerUnavailable: redis-server is missing or did not come up.
        """
        program = shutil.which("redis-server")
        if program is None:
            raise ServerUnavailable("redis-server is not installed: apt-get install redis-server")
        self.port = free_port()
        command = [
            program,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.run_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        self.process = ServerProcess(
            "Redis", command, self.log, {"PATH": "/usr/bin:/bin"}, stdin_pipe=False, user=self.user
        )
        _wait_for_port(self.process, self.port, b"PING\r\n", b"+PONG")

    def stop(self) -> None:
        """Stops the server (its process group)."""
        if self.process is not None:
            self.process.stop()
            self.process = None
