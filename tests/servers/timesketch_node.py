"""A real Timesketch server (PyPI) on 127.0.0.1, with private PostgreSQL, Redis and celery.

Install, once per version into the shared cache: a virtualenv of its own, the sdist's
``requirements.txt`` held to the pins in ``timesketch_constraints/<version>.txt`` beside
this file, then ``pip install --no-deps`` of the sdist itself (its metadata names no
dependencies) and ``psycopg2-binary``. The sdist's ``data/`` folder is kept beside the
virtualenv.

Each start gets a fresh run folder with a PostgreSQL cluster, a redis-server, the config
folder (``data/`` plus ``timesketch.conf``), the upload folder, a celery worker and
gunicorn, all bound to 127.0.0.1. Under root everything runs as the system user
:data:`SERVICE_USER`, so the web process and the worker share the upload folder.

Limitations: the search index lives on the OpenSearch node the caller passes in;
Timesketch 20260611 and later refuse OpenSearch older than 2.19.5. No analyzers, plaso or
LLM features are configured. ``tsctl create-user --password`` shows the (random) password
to other local users in the process list for a moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from . import datastores, debian
from .base import (
    ServerProcess,
    ServerUnavailable,
    cache_dir,
    chown_tree,
    ensure_system_user,
    free_port,
    run_logged,
    user_options,
)

logger = logging.getLogger(__name__)

#: Talks to 127.0.0.1 directly, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

#: The Timesketch release installed by default; the clients in pyproject.toml match it.
DEFAULT_VERSION = "20261014"

#: Pinned versions of everything the server's requirements pull in, one file per release.
CONSTRAINTS_DIR = Path(__file__).resolve().parent / "timesketch_constraints"

#: The interpreter of the server's virtualenv. Debian's, since any user may run it; a
#: pyenv Python under root's home folder is closed to :data:`SERVICE_USER`.
SYSTEM_PYTHON = Path("/usr/bin/python3")

#: Timesketch 2026 releases need numpy 2.4 and pandas 3, hence Python 3.11 or later.
MIN_PYTHON = (3, 11)

#: The pip that resolves the pins; Debian 12's bundled pip 23.0 rejects some of them.
PIP = "pip==26.3"

#: The PostgreSQL driver, which Timesketch's requirements leave out.
PSYCOPG2 = "psycopg2-binary==2.9.13"

#: The system user that runs PostgreSQL, Redis, celery and gunicorn when we are root.
SERVICE_USER = "inbec-timesketch"

#: Database, and PostgreSQL superuser, of the Timesketch tables.
DATABASE = "timesketch"

#: Seconds one pip call may take; a cold install of the requirements takes about two.
PIP_TIMEOUT_S = 1200.0

#: Seconds from starting gunicorn until ``/login/`` answers (the app imports pandas & co).
WEB_START_TIMEOUT_S = 180.0

#: Seconds the celery worker may take to report ``ready``.
WORKER_START_TIMEOUT_S = 120.0

#: Seconds one ``tsctl`` call may take.
TSCTL_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class TimesketchServer:
    """A running Timesketch: its base URL and a local user's credentials."""

    url: str
    username: str
    password: str
    #: A second user, for permission tests (None on a server given by URL).
    reader: tuple[str, str] | None = None


class TimesketchNode:
    """One Timesketch server; :meth:`start` installs on first use and returns its URL.

    Args:
        opensearch_url: base URL of the OpenSearch node for the events
            (``http://127.0.0.1:PORT``); 2.19.5 or later for Timesketch 20260611 and later.
        version: the Timesketch release on PyPI.
        username: the Timesketch user to create.
        password: that user's password (default: random).
        cache: the cache folder (default :func:`~servers.base.cache_dir`).
    """

    def __init__(
        self,
        opensearch_url: str,
        version: str = DEFAULT_VERSION,
        username: str = "inbec",
        password: str | None = None,
        cache: Path | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(opensearch_url)
        if parts.hostname is None or parts.port is None:
            raise ServerUnavailable(f"OpenSearch URL {opensearch_url!r} lacks a host or port")
        self.opensearch_host = parts.hostname
        self.opensearch_port = parts.port
        self.version = version
        self.username = username
        self.password = password or secrets.token_urlsafe(18)
        self.reader = (f"{username}-reader", secrets.token_urlsafe(18))
        self.cache = cache or cache_dir()
        self.url: str | None = None
        self._run_dir: Path | None = None
        self._postgres: datastores.PostgresCluster | None = None
        self._redis: datastores.RedisServer | None = None
        self._processes: list[ServerProcess] = []

    @property
    def constraints(self) -> Path | None:
        """This release's pins, or None when the project has none for it."""
        path = CONSTRAINTS_DIR / f"{self.version}.txt"
        return path if path.is_file() else None

    @functools.cached_property
    def install_dir(self) -> Path:
        """Cache folder of the virtualenv; the key covers the pins and the Python release."""
        digest = hashlib.sha256()
        if self.constraints is not None:
            digest.update(self.constraints.read_bytes())
        digest.update(f"{PIP} {PSYCOPG2}".encode())
        digest.update(" ".join(self.base_python).encode())
        return self.cache / "timesketch" / f"{self.version}-{digest.hexdigest()[:12]}"

    @functools.cached_property
    def base_python(self) -> tuple[str, str]:
        """The interpreter the virtualenv is made from, and its ``sys.version``.

        Raises:
            ServerUnavailable: no Python 3.11+ that the service user may run.
        """
        candidates = [str(SYSTEM_PYTHON)] if SYSTEM_PYTHON.is_file() else []
        if os.geteuid() != 0:
            candidates.append(sys.executable)
        for python in candidates:
            found = _python_version(python)
            if found is not None and found[0] >= MIN_PYTHON:
                if python == str(SYSTEM_PYTHON):
                    # Debian splits venv (ensurepip) off into its own package.
                    debian.ensure_packages(
                        {"python3-venv": functools.partial(_has_ensurepip, python)}
                    )
                return python, found[1]
        raise ServerUnavailable(
            f"Timesketch needs Python {'.'.join(map(str, MIN_PYTHON))}+ at {SYSTEM_PYTHON}"
            " (as root, the test servers' user cannot run an interpreter under /root)"
        )

    @property
    def venv_bin(self) -> Path:
        """The virtualenv's programs (``tsctl``, ``celery``, ``gunicorn``)."""
        return self.install_dir / "venv" / "bin"

    def install(self) -> Path:
        """Builds the virtualenv and keeps the sdist's ``data/``, unless cached.

        Returns:
            The install folder, holding ``venv/`` and ``data/``.

        Raises:
            ServerUnavailable: pip failed; the message quotes its log.
        """
        target = self.install_dir
        marker = target / ".inbec-installed"
        if marker.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target.parent / f".{target.name}.lock"):
            if marker.is_file():
                return target
            self._install_into(target)
            marker.write_text(f"timesketch=={self.version}\n", encoding="utf-8")
        return target

    def _install_into(self, target: Path) -> None:
        started = time.monotonic()
        logger.info("installing Timesketch %s into %s", self.version, target)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        log = target / "install.log"
        python = target / "venv" / "bin" / "python"
        base = self.base_python[0]
        run_logged(
            [base, "-m", "venv", str(target / "venv")], log, f"{base} -m venv", PIP_TIMEOUT_S
        )
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        run_logged([*pip, "install", PIP], log, f"pip install {PIP}", PIP_TIMEOUT_S)

        sdist_dir = target / "sdist"
        download = [*pip, "download", "--no-deps", "--no-binary", ":all:"]
        download += ["--dest", str(sdist_dir), f"timesketch=={self.version}"]
        run_logged(download, log, "pip download", PIP_TIMEOUT_S)
        sdists = sorted(sdist_dir.glob("timesketch-*.tar.gz"))
        if not sdists:
            raise ServerUnavailable(f"pip download left no timesketch sdist in {sdist_dir}", log)
        source = _unpack(sdists[0], sdist_dir)

        requirements = [*pip, "install", "-r", str(source / "requirements.txt"), PSYCOPG2]
        if self.constraints is not None:
            requirements += ["--constraint", str(self.constraints)]
        else:
            logger.warning(
                "no pins for Timesketch %s; installing its loose requirements", self.version
            )
        run_logged(requirements, log, "pip install -r requirements.txt", PIP_TIMEOUT_S)
        run_logged(
            [*pip, "install", "--no-deps", str(sdists[0])],
            log,
            "pip install timesketch",
            PIP_TIMEOUT_S,
        )

        shutil.copytree(source / "data", target / "data")
        shutil.rmtree(source)
        # The service user must reach the tree whatever root's umask was.
        for folder in (self.cache, target.parent, target):
            folder.chmod(0o755)
        logger.info("installed Timesketch %s in %.0fs", self.version, time.monotonic() - started)

    def start(self) -> str:
        """Installs if needed, starts every process and waits until ``/login/`` answers.

        Returns:
            The base URL, ``http://127.0.0.1:PORT``.

        Raises:
            ServerUnavailable: a part did not start; the message quotes its log.
        """
        install = self.install()
        datastores.ensure_installed()
        user = ensure_system_user(SERVICE_USER)
        run_dir = self._run_dir = Path(tempfile.mkdtemp(prefix="inbec-timesketch-"))
        try:
            return self._start_in(install, run_dir, user)
        except BaseException:
            self.stop()
            raise

    def _start_in(self, install: Path, run_dir: Path, user: str | None) -> str:
        started = time.monotonic()
        for name in ("postgres", "redis", "upload", "home", "tmp"):
            (run_dir / name).mkdir()
        config_dir = run_dir / "config"
        shutil.copytree(install / "data", config_dir)
        if user is not None:
            chown_tree(run_dir, user)

        logs = self.cache / "logs"
        postgres_password = secrets.token_urlsafe(18)
        self._postgres = datastores.PostgresCluster(
            run_dir / "postgres",
            logs / "timesketch-postgres.log",
            user,
            DATABASE,
            postgres_password,
        )
        self._postgres.start()
        database_url = self._postgres.create_database(DATABASE)
        self._redis = datastores.RedisServer(run_dir / "redis", logs / "timesketch-redis.log", user)
        self._redis.start()

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = self._write_config(config_dir, run_dir, url, database_url, self._redis.url)
        env = self._environment(run_dir, config)
        self._create_user(env, user, run_dir, self.username, self.password)
        self._create_user(env, user, run_dir, *self.reader)

        worker = self._spawn(
            "Timesketch celery worker",
            [
                str(self.venv_bin / "celery"),
                "--app",
                "timesketch.lib.tasks",
                "worker",
                "--loglevel=info",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
            ],
            logs / "timesketch-celery.log",
            env,
            run_dir,
            user,
        )
        web = self._spawn(
            f"Timesketch {self.version}",
            [
                str(self.venv_bin / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "120",
                "timesketch.wsgi:application",
            ],
            logs / "timesketch-gunicorn.log",
            env,
            run_dir,
            user,
        )
        _wait_for_log(worker, b" ready.", WORKER_START_TIMEOUT_S)
        _wait_for_login(web, url, WEB_START_TIMEOUT_S)
        self.url = url
        logger.info(
            "Timesketch %s ready at %s in %.0fs", self.version, url, time.monotonic() - started
        )
        return url

    def _write_config(
        self, config_dir: Path, run_dir: Path, url: str, database_url: str, redis_url: str
    ) -> Path:
        """``timesketch.conf``: the sdist's sample with our paths and services.

        The sample is a Python file, so assignments appended at its end win.
        """
        sample = (config_dir / "timesketch.conf").read_text(encoding="utf-8")
        text = sample.replace("/etc/timesketch/", f"{config_dir}/")
        settings: dict[str, object] = {
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SQLALCHEMY_DATABASE_URI": database_url,
            "OPENSEARCH_HOSTS": [{"host": self.opensearch_host, "port": self.opensearch_port}],
            "OPENSEARCH_HOST": self.opensearch_host,
            "OPENSEARCH_PORT": self.opensearch_port,
            "OPENSEARCH_USER": None,
            "OPENSEARCH_PASSWORD": None,
            "OPENSEARCH_SSL": False,
            "UPLOAD_ENABLED": True,
            "UPLOAD_FOLDER": str(run_dir / "upload"),
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "GENERIC_MAPPING_FILE": str(config_dir / "generic.mappings"),
            "PLASO_MAPPING_FILE": str(config_dir / "plaso.mappings"),
            "PLASO_LOG_FOLDER": str(run_dir / "tmp"),
            "EXTERNAL_HOST_URL": url,
        }
        lines = [f"{name} = {value!r}" for name, value in settings.items()]
        text += "\n\n# Test server settings (inbec-export tests/servers).\n" + "\n".join(lines)
        config = config_dir / "timesketch.conf"
        config.write_text(text + "\n", encoding="utf-8")
        # The file holds the secret key and database password.
        config.chmod(0o600)
        shutil.chown(config, *_owner(config_dir))
        return config

    def _environment(self, run_dir: Path, config: Path) -> dict[str, str]:
        """A small environment of our own: no telemetry, metrics or proxies from ours."""
        return {
            "PATH": f"{self.venv_bin}:/usr/bin:/bin",
            "HOME": str(run_dir / "home"),
            "TMPDIR": str(run_dir / "tmp"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "TIMESKETCH_SETTINGS": str(config),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def _create_user(
        self, env: Mapping[str, str], user: str | None, run_dir: Path, name: str, password: str
    ) -> None:
        """``tsctl create-user``; the app creates its tables on the first call."""
        command = [str(self.venv_bin / "tsctl"), "create-user", name]
        command += ["--password", password]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=dict(env),
                cwd=run_dir,
                timeout=TSCTL_TIMEOUT_S,
                check=False,
                **user_options(user),
            )
        except subprocess.TimeoutExpired:
            raise ServerUnavailable(f"tsctl create-user took over {TSCTL_TIMEOUT_S:.0f}s") from None
        if result.returncode != 0 or "created" not in result.stdout:
            output = (result.stdout + result.stderr).replace(password, "<password>")
            tail = "\n".join(output.splitlines()[-40:])
            raise ServerUnavailable(f"tsctl create-user failed ({result.returncode}):\n{tail}")

    def _spawn(
        self,
        name: str,
        command: list[str],
        log: Path,
        env: Mapping[str, str],
        run_dir: Path,
        user: str | None,
    ) -> ServerProcess:
        # cwd is the run folder so that gunicorn finds no gunicorn.conf.py of anyone's.
        process = ServerProcess(name, command, log, env, cwd=run_dir, stdin_pipe=False, user=user)
        self._processes.append(process)
        return process

    def stop(self) -> None:
        """Stops gunicorn, the worker, Redis and PostgreSQL, then removes the run folder."""
        while self._processes:
            self._processes.pop().stop()
        for store in (self._redis, self._postgres):
            if store is not None:
                store.stop()
        self._redis = self._postgres = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        self.url = None

    def server(self) -> TimesketchServer:
        """The running server's URL and user."""
        if self.url is None:
            raise RuntimeError("the Timesketch server is not running")
        return TimesketchServer(self.url, self.username, self.password, self.reader)

    def __enter__(self) -> TimesketchServer:
        self.start()
        return self.server()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path``, so parallel sessions install only once."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _python_version(python: str) -> tuple[tuple[int, int], str] | None:
    """The feature release and ``sys.version`` of an interpreter, or None if it fails."""
    script = "import sys; print(*sys.version_info[:2]); print(sys.version)"
    try:
        result = subprocess.run(
            [python, "-c", script], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) < 2:
        return None
    major, minor = (int(part) for part in lines[0].split())
    return (major, minor), lines[1]


def _has_ensurepip(python: str) -> bool:
    result = subprocess.run([python, "-c", "import ensurepip"], capture_output=True, check=False)
    return result.returncode == 0


def _unpack(sdist: Path, destination: Path) -> Path:
    """Unpacks the sdist (regular files and folders only); returns its top folder."""
    with tarfile.open(sdist) as archive:
        archive.extractall(destination, filter="data")
    top = destination / sdist.name.removesuffix(".tar.gz")
    if not (top / "requirements.txt").is_file():
        raise ServerUnavailable(f"{sdist.name} has no requirements.txt at {top}")
    return top


def _owner(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_uid, status.st_gid


def _wait_for_log(process: ServerProcess, needle: bytes, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.running:
            raise process.fail(f"exited with status {process.popen.returncode} while starting")
        with contextlib.suppress(OSError):
            if needle in process.log.read_bytes():
                return
        time.sleep(0.5)
    raise process.fail(f"did not log {needle.decode()!r} within {timeout_s:.0f}s")


def _wait_for_login(process: ServerProcess, url: str, timeout_s: float) -> None:
    """Polls ``/login/`` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.running:
            raise process.fail(f"exited with status {process.popen.returncode} while starting")
        try:
            with _DIRECT.open(f"{url}/login/", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise process.fail(f"{url}/login/ did not answer 200 within {timeout_s:.0f}s")
