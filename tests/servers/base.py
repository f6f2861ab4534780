"""What the OpenSearch and Elasticsearch test nodes share: cache, Java, processes, health."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

#: Overrides the cache folder of downloads, unpacked distributions and compiled classes.
CACHE_ENV = "INBEC_TEST_SERVERS_CACHE"

#: Folder name of the cache under the user's (or, for root, the system's) cache folder.
CACHE_NAME = "inbec-export-test-servers"

#: Seconds a node may take from process start to cluster health yellow.
START_TIMEOUT_S = 240.0

#: Seconds between SIGTERM to the process group and SIGKILL.
STOP_TIMEOUT_S = 30.0

#: Lines of a server's log quoted in an error.
LOG_TAIL_LINES = 60

#: Folders where Debian and most Linux distributions put their JDKs.
JVM_ROOTS = (Path("/usr/lib/jvm"), Path("/usr/java"), Path("/opt/java"))


class ServerUnavailable(Exception):
    """A test server could not be installed or started; the message says why."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        self.log = log
        if log is not None:
            message = f"{message}\n--- last lines of {log} ---\n{log_tail(log)}"
        super().__init__(message)


def cache_dir() -> Path:
    """The cache folder, created on demand.

    Root gets a folder under ``/var/cache``, not ``~/.cache``: Elasticsearch runs as an
    unprivileged user, who cannot enter root's home folder.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        path = Path(configured).expanduser()
    elif os.geteuid() == 0:
        path = Path("/var/cache") / CACHE_NAME
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / CACHE_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def java_major(java_home: Path) -> int | None:
    """The feature release of the JDK at ``java_home`` (17 for 17.0.15), from its ``release``."""
    try:
        release = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(?:1\.)?(\d+)', release, re.MULTILINE)
    return int(match.group(1)) if match else None


def _java_candidates() -> list[Path]:
    candidates: list[Path] = []
    for variable in ("INBEC_TEST_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(variable):
            candidates.append(Path(os.environ[variable]))
    on_path = shutil.which("java")
    if on_path:
        # /usr/bin/java -> /etc/alternatives/java -> <home>/bin/java
        candidates.append(Path(os.path.realpath(on_path)).parent.parent)
    for root in JVM_ROOTS:
        if root.is_dir():
            candidates.extend(sorted(p for p in root.iterdir() if p.is_dir()))
    return candidates


def find_java_home(min_major: int, max_major: int | None = None) -> Path:
    """The JDK with the lowest release in ``[min_major, max_major]``.

    Looks at ``INBEC_TEST_JAVA_HOME``, ``JAVA_HOME``, the ``java`` on ``PATH`` and the
    usual JVM folders. The lowest release wins because the servers are tested most on the
    release they were built for.

    Raises:
        ServerUnavailable: no JDK in that range is installed.
    """
    found: dict[Path, int] = {}
    for home in _java_candidates():
        home = home.resolve()
        major = java_major(home)
        if major is None or not (home / "bin" / "java").is_file():
            continue
        if major >= min_major and (max_major is None or major <= max_major):
            found.setdefault(home, major)
    if not found:
        wanted = f"{min_major}+" if max_major is None else f"{min_major} to {max_major}"
        raise ServerUnavailable(
            f"no Java {wanted} found (set INBEC_TEST_JAVA_HOME to a JDK of that release)"
        )
    return min(found, key=lambda home: (found[home], str(home)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Credentials:
    """HTTP basic credentials of a node with security enabled."""

    username: str
    password: str

    def header(self) -> str:
        """The ``Authorization`` header value."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


def get_json(url: str, credentials: Credentials | None = None, timeout: float = 10.0) -> Any:
    """GET ``url`` (on 127.0.0.1 only) and decode its JSON body.

    Raises:
        urllib.error.URLError: the server did not answer or answered with an error.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if credentials is not None:
        request.add_header("Authorization", credentials.header())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def cluster_health(url: str, credentials: Credentials | None = None, wait_s: int = 5) -> str | None:
    """The health status (``green``, ``yellow``, ``red``) of the cluster at ``url``, or None."""
    query = f"{url}/_cluster/health?wait_for_status=yellow&timeout={wait_s}s"
    try:
        body = get_json(query, credentials, timeout=wait_s + 5)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    status = body.get("status") if isinstance(body, dict) else None
    return status if isinstance(status, str) else None


class ServerProcess:
    """A server started in its own process group, whose whole group is ended on stop."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin_pipe: bool = True,
        user: str | None = None,
    ) -> None:
        """Starts ``command`` with its output in ``log``.

        Args:
            name: what to call the server in messages.
            command: the program and its arguments.
            log: file for standard output and error, truncated first.
            env: the environment, or None for ours.
            cwd: the working folder.
            stdin_pipe: keep a pipe to its standard input (closed on stop, so a server that
                watches for end of input also stops when the test process dies);
                otherwise ``/dev/null``.
            user: run as this system user (needs root), with its group and no others.
        """
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file: IO[bytes] = log.open("wb")
        logger.info("starting %s (log: %s)", name, log)
        logger.debug("command: %s", " ".join(command))
        self.popen = subprocess.Popen(
            list(command),
            **user_options(user),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        """True while the main process has not exited."""
        return self.popen.poll() is None

    def fail(self, message: str) -> ServerUnavailable:
        """Stops the server and returns an error quoting its log."""
        self.stop()
        return ServerUnavailable(f"{self.name}: {message}", self.log)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after :data:`STOP_TIMEOUT_S`."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        group = self.popen.pid
        self._signal_group(group, signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %ss; killing it", self.name, STOP_TIMEOUT_S)
        # Children (the server JVM under a launcher) may outlive the main process.
        self._signal_group(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        self._log_file.close()

    @staticmethod
    def _signal_group(group: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def run_logged(
    command: Sequence[str],
    log: Path,
    what: str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Runs an install step (Maven, pip), appending the command line and its output to
    ``log``.

    Raises:
        ServerUnavailable: the command failed or took over ``timeout_s``; the message
            points at ``log``.
    """
    logger.info("running %s", what)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        output.write(f"$ {' '.join(command)}\n".encode())
        output.flush()
        try:
            result = subprocess.run(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServerUnavailable(f"{what} took over {timeout_s:.0f}s", log) from None
    if result.returncode != 0:
        raise ServerUnavailable(f"{what} exited with status {result.returncode}", log)


def ensure_system_user(name: str) -> str | None:
    """The system user ``name`` under root, created on first use; None for other users.

    Servers that refuse root (Elasticsearch, PostgreSQL) run as such a user.

    Raises:
        ServerUnavailable: running as root without ``useradd``.
    """
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise ServerUnavailable("running as root, but useradd is missing") from None
        logger.info("creating system user %s to run test servers", name)
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
            capture_output=True,
        )
    return name


def user_options(user: str | None) -> dict[str, Any]:
    """Keyword arguments of :class:`subprocess.Popen` that run a child as ``user``.

    The environment is left as given, unlike ``runuser``, which resets ``PATH``.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def chown_tree(root: Path, user: str) -> None:
    """Gives ``root`` and everything below it to ``user`` and the user's group."""
    entry = pwd.getpwnam(user)
    for folder, subfolders, files in os.walk(root):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in [*subfolders, *files]:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)


def wait_until_healthy(
    process: ServerProcess,
    url_of: Callable[[], str | None],
    credentials: Credentials | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> str:
    """Polls until the cluster is yellow or green; returns its base URL.

    Args:
        process: the started server.
        url_of: a callable returning the base URL, or None while it is not known yet.
        credentials: basic credentials when security is on.
        timeout_s: seconds before giving up.

    Raises:
        ServerUnavailable: the process exited or the cluster stayed red or silent.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.running:
            raise process.fail(f"exited with status {process.popen.returncode} while starting")
        url = url_of()
        if url is not None and cluster_health(url, credentials) in {"yellow", "green"}:
            return url
        time.sleep(0.5)
    raise process.fail(f"not healthy within {timeout_s:.0f}s")
