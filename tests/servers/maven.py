"""Fetching server artifacts and class paths from Maven Central with the ``mvn`` client."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .base import ServerUnavailable, run_logged

logger = logging.getLogger(__name__)

#: Pinned so that every machine resolves with the same plugin, not Maven's old default.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

#: Seconds one Maven call may take; a cold fetch of a distribution takes well under one.
MAVEN_TIMEOUT_S = 900.0


def mvn_executable() -> str:
    """The ``mvn`` on ``PATH``.

    Raises:
        ServerUnavailable: Maven is not installed.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerUnavailable("Maven (mvn) is not installed: apt-get install maven")
    return mvn


def run_maven(
    arguments: Sequence[str], log: Path, java_home: Path, cwd: Path | None = None
) -> None:
    """Runs ``mvn -B`` with ``arguments``, appending its output to ``log``.

    Raises:
        ServerUnavailable: Maven failed or took longer than :data:`MAVEN_TIMEOUT_S`.
    """
    command = [mvn_executable(), "-B", "--no-transfer-progress", *arguments]
    env = {**os.environ, "JAVA_HOME": str(java_home)}
    run_logged(command, log, "mvn", MAVEN_TIMEOUT_S, env=env, cwd=cwd)


def copy_artifact(coordinates: str, directory: Path, log: Path, java_home: Path) -> Path:
    """Downloads one artifact (``group:artifact:version[:type[:classifier]]``) into ``directory``.

    Maven keeps its own copy in the local repository, so a second call is offline.

    Returns:
        The copied file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    run_maven(
        [
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={coordinates}",
            f"-DoutputDirectory={directory}",
            "-Dmdep.overWriteReleases=true",
        ],
        log,
        java_home,
        cwd=directory,
    )
    parts = coordinates.split(":")
    artifact, version = parts[1], parts[2]
    extension = parts[3] if len(parts) > 3 else "jar"
    classifier = f"-{parts[4]}" if len(parts) > 4 else ""
    copied = directory / f"{artifact}-{version}{classifier}.{extension}"
    if not copied.is_file():
        raise ServerUnavailable(f"mvn reported success but {copied} is missing", log)
    return copied


def build_classpath(
    pom: Path, output: Path, log: Path, java_home: Path, properties: dict[str, str]
) -> list[Path]:
    """Resolves the runtime class path of ``pom`` into the file ``output``.

    Returns:
        The jars, in Maven's order.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    defines = [f"-D{name}={value}" for name, value in properties.items()]
    run_maven(
        [
            "-f",
            str(pom),
            f"{DEPENDENCY_PLUGIN}:build-classpath",
            "-Dmdep.includeScope=runtime",
            f"-Dmdep.outputFile={output}",
            *defines,
        ],
        log,
        java_home,
        cwd=output.parent,
    )
    text = output.read_text(encoding="utf-8").strip()
    return [Path(entry) for entry in text.split(os.pathsep) if entry]
