"""An Elasticsearch node from Elastic's integ-test-zip distribution on 127.0.0.1.

The zip (``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip`` on
Maven Central) is unpacked once into the cache; every start gets a fresh configuration and
data folder. Elasticsearch refuses to run as root, so under root it runs as the system
user :data:`SERVICE_USER`, created on first use.

Limitations: the integ-test-zip holds only the server, transport-netty4, x-pack core and
security (and APM): no painless, analysis-common, ingest, data streams or ILM. Index
templates for these tests must need nothing more. ``GET /`` answers 405 on 8.x. A test
process killed with SIGKILL leaves the node running (the fixtures stop it on any normal
end); the OpenSearch launcher, by contrast, stops when its standard input closes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from . import maven
from .base import (
    Credentials,
    ServerProcess,
    ServerUnavailable,
    cache_dir,
    chown_tree,
    ensure_system_user,
    find_java_home,
    free_port,
    wait_until_healthy,
)

logger = logging.getLogger(__name__)

#: Newest releases seen on Maven Central as integ-test-zip (9.3 and later were not there).
DEFAULT_VERSION_8 = "8.19.21"
DEFAULT_VERSION_9 = "9.2.0"

ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch"

#: The unprivileged user Elasticsearch runs as when the tests run as root.
SERVICE_USER = "inbec-search"

#: Java heap of the node; 512 MiB is plenty for the test indices.
DEFAULT_HEAP = "512m"

#: The user name that ``bootstrap.password`` sets the password of.
SUPERUSER = "elastic"

SettingValue = str | int | bool | list[str]


class ElasticsearchNode:
    """One Elasticsearch node; :meth:`start` installs on first use and returns its URL.

    Args:
        version: the Elasticsearch release; 9.x needs Java 21+, 8.x runs on Java 17.
        settings: ``elasticsearch.yml`` settings added to (and overriding) ours.
        password: when given, security is on (HTTP without TLS) and ``elastic`` has this
            password; see :attr:`credentials`.
        heap: the Java heap, such as ``512m`` or ``1g``.
        cache: the cache folder (default :func:`~servers.base.cache_dir`).
    """

    def __init__(
        self,
        version: str = DEFAULT_VERSION_8,
        settings: Mapping[str, SettingValue] | None = None,
        password: str | None = None,
        heap: str | None = None,
        cache: Path | None = None,
    ) -> None:
        self.version = version
        self.extra_settings = dict(settings or {})
        self.credentials = Credentials(SUPERUSER, password) if password else None
        self.heap = heap or os.environ.get("INBEC_TEST_SERVERS_HEAP", DEFAULT_HEAP)
        self.cache = cache or cache_dir()
        self.url: str | None = None
        self.process: ServerProcess | None = None
        self._run_dir: Path | None = None
        major = int(version.split(".")[0])
        self.java_home = find_java_home(21 if major >= 9 else 17)

    @property
    def home(self) -> Path:
        """The unpacked distribution in the cache."""
        return self.cache / "elasticsearch" / self.version / f"elasticsearch-{self.version}"

    def install(self) -> Path:
        """Downloads and unpacks the distribution unless it is cached.

        Returns:
            The distribution's home folder.

        Raises:
            ServerUnavailable: Maven could not fetch it.
        """
        marker = self.home / ".inbec-installed"
        if marker.is_file():
            return self.home

        logger.info("installing Elasticsearch %s into %s", self.version, self.home)
        parent = self.home.parent
        parent.mkdir(parents=True, exist_ok=True)
        log = parent / "install.log"
        with tempfile.TemporaryDirectory(prefix="download-", dir=parent) as download:
            archive = maven.copy_artifact(
                f"{ARTIFACT}:{self.version}:zip", Path(download), log, self.java_home
            )
            shutil.rmtree(self.home, ignore_errors=True)
            _unzip(archive, parent)
        if not (self.home / "bin" / "elasticsearch").is_file():
            raise ServerUnavailable(f"{archive.name} did not unpack into {self.home}", log)
        # The service user must reach the tree whatever root's umask was.
        for folder in (self.cache, self.cache / "elasticsearch", parent):
            folder.chmod(0o755)
        marker.write_text(f"{ARTIFACT}:{self.version}:zip\n", encoding="utf-8")
        return self.home

    def settings(self, http_port: int, run_dir: Path) -> dict[str, SettingValue]:
        """The ``elasticsearch.yml`` of one start."""
        settings: dict[str, SettingValue] = {
            "cluster.name": "inbec-test",
            "node.name": "inbec-test-node",
            "network.host": "127.0.0.1",
            "http.port": http_port,
            "transport.port": "9300-9399",
            "discovery.type": "single-node",
            "path.data": str(run_dir / "data"),
            "path.logs": str(run_dir / "logs"),
            "xpack.security.enabled": self.credentials is not None,
            "action.destructive_requires_name": False,
        }
        if self.credentials is not None:
            settings["xpack.security.http.ssl.enabled"] = False
            settings["xpack.security.transport.ssl.enabled"] = False
        settings.update(self.extra_settings)
        return settings

    def start(self) -> str:
        """Installs if needed, starts the node and waits for yellow.

        Returns:
            The base URL, ``http://127.0.0.1:PORT``.

        Raises:
            ServerUnavailable: the node did not become healthy; the message quotes its log.
        """
        home = self.install()
        user = _service_user()
        run_dir = self._run_dir = Path(tempfile.mkdtemp(prefix="inbec-elasticsearch-"))
        port = free_port()
        config = self._write_config(home, run_dir, port)
        env = {
            **os.environ,
            "ES_PATH_CONF": str(config),
            "ES_TMPDIR": str(run_dir / "tmp"),
            "ES_JAVA_HOME": str(self.java_home),
        }
        env.pop("ES_JAVA_OPTS", None)
        env.pop("JAVA_HOME", None)
        if user is not None:
            chown_tree(run_dir, user)
        if self.credentials is not None:
            self._write_keystore(home, run_dir, env, user)

        log = self.cache / "logs" / f"elasticsearch-{self.version}.log"
        command = _as_user(user, [str(home / "bin" / "elasticsearch")])
        self.process = ServerProcess(
            f"Elasticsearch {self.version}", command, log, env, cwd=run_dir, stdin_pipe=False
        )
        url = f"http://127.0.0.1:{port}"
        try:
            self.url = wait_until_healthy(self.process, lambda: url, self.credentials)
        except BaseException:
            self.stop()
            raise
        logger.info("Elasticsearch %s ready at %s", self.version, self.url)
        return self.url

    def _write_config(self, home: Path, run_dir: Path, port: int) -> Path:
        for name in ("data", "logs", "tmp"):
            (run_dir / name).mkdir()
        config = run_dir / "config"
        shutil.copytree(home / "config", config)
        # JSON scalars and lists are valid YAML, quoted where YAML would misread them.
        settings = self.settings(port, run_dir)
        lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
        (config / "elasticsearch.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        heap = f"-Xms{self.heap}\n-Xmx{self.heap}\n"
        (config / "jvm.options.d").mkdir(exist_ok=True)
        (config / "jvm.options.d" / "inbec-heap.options").write_text(heap, encoding="utf-8")
        return config

    def _write_keystore(
        self, home: Path, run_dir: Path, env: Mapping[str, str], user: str | None
    ) -> None:
        assert self.credentials is not None
        tool = str(home / "bin" / "elasticsearch-keystore")
        steps = [
            ([tool, "create"], None),
            ([tool, "add", "--stdin", "--force", "bootstrap.password"], self.credentials.password),
        ]
        for arguments, stdin in steps:
            result = subprocess.run(
                _as_user(user, arguments),
                input=stdin,
                capture_output=True,
                text=True,
                env=dict(env),
                cwd=run_dir,
                check=False,
                timeout=120,
            )
            if result.returncode != 0:
                raise ServerUnavailable(
                    f"elasticsearch-keystore {arguments[1]} failed: {result.stdout}{result.stderr}"
                )

    def stop(self) -> None:
        """Stops the node (its whole process group) and removes its data."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _unzip(archive: Path, destination: Path) -> None:
    """Unpacks ``archive``, keeping the Unix permission bits (``zipfile`` alone drops them)."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            path = Path(bundle.extract(member, destination))
            mode = (member.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode | (stat.S_IRUSR | stat.S_IWUSR))
            elif path.is_dir():
                path.chmod(0o755)


def _service_user() -> str | None:
    """The user to run Elasticsearch as: :data:`SERVICE_USER` under root, else ourselves."""
    return ensure_system_user(SERVICE_USER)


def _as_user(user: str | None, command: list[str]) -> list[str]:
    if user is None:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServerUnavailable("running as root, but runuser (util-linux) is missing")
    return [runuser, "-u", user, "--", *command]
