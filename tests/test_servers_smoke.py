"""Smoke tests of the real search servers: the project's templates, bulk create, conflicts."""

from __future__ import annotations

from typing import Any, Protocol

import pytest
from elasticsearch import AuthenticationException, Elasticsearch
from opensearchpy import OpenSearch
from servers.fixtures import SecureServer

from inbec_export.ecs.mappings import KINDS, index_templates

pytestmark = pytest.mark.server

#: Template and index prefix of these tests, apart from the default ``inbec`` ones.
PREFIX = "inbec-smoke"

#: Seconds a client waits for one answer.
REQUEST_TIMEOUT_S = 60


class SearchApi(Protocol):
    """The calls these tests make, over either client."""

    def version(self) -> str: ...

    def health(self) -> str: ...

    def put_template(self, name: str, body: dict[str, Any]) -> None: ...

    def delete_template(self, name: str) -> None: ...

    def create_index(self, name: str) -> None: ...

    def delete_index(self, name: str) -> None: ...

    def mapping(self, index: str) -> dict[str, Any]: ...

    def bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]: ...

    def refresh(self, index: str) -> None: ...

    def count(self, index: str) -> int: ...

    def search_ids(self, index: str, query: dict[str, Any]) -> list[str]: ...


class ElasticsearchApi:
    """:class:`SearchApi` over elasticsearch-py 8 (which also speaks to 9.x servers)."""

    def __init__(self, client: Elasticsearch) -> None:
        self.client = client

    def version(self) -> str:
        # GET / is missing from the 8.x integ-test-zip, so ask the node itself.
        nodes = self.client.nodes.info(node_id="_local")["nodes"]
        return str(next(iter(nodes.values()))["version"])

    def health(self) -> str:
        return str(self.client.cluster.health(wait_for_status="yellow", timeout="30s")["status"])

    def put_template(self, name: str, body: dict[str, Any]) -> None:
        self.client.indices.put_index_template(name=name, **body)

    def delete_template(self, name: str) -> None:
        self.client.options(ignore_status=404).indices.delete_index_template(name=name)

    def create_index(self, name: str) -> None:
        self.client.indices.create(index=name)

    def delete_index(self, name: str) -> None:
        self.client.options(ignore_status=404).indices.delete(index=name)

    def mapping(self, index: str) -> dict[str, Any]:
        return dict(self.client.indices.get_mapping(index=index)[index]["mappings"])

    def bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.client.bulk(operations=operations))

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index)

    def count(self, index: str) -> int:
        return int(self.client.count(index=index)["count"])

    def search_ids(self, index: str, query: dict[str, Any]) -> list[str]:
        hits = self.client.search(index=index, query=query)["hits"]["hits"]
        return sorted(hit["_id"] for hit in hits)


class OpenSearchApi:
    """:class:`SearchApi` over opensearch-py."""

    def __init__(self, client: OpenSearch) -> None:
        self.client = client

    def version(self) -> str:
        return str(self.client.info()["version"]["number"])

    def health(self) -> str:
        # opensearch-py reads a "timeout" argument as its own request timeout.
        return str(self.client.cluster.health(wait_for_status="yellow")["status"])

    def put_template(self, name: str, body: dict[str, Any]) -> None:
        self.client.indices.put_index_template(name=name, body=body)

    def delete_template(self, name: str) -> None:
        self.client.indices.delete_index_template(name=name, params={"ignore": 404})

    def create_index(self, name: str) -> None:
        self.client.indices.create(index=name)

    def delete_index(self, name: str) -> None:
        self.client.indices.delete(index=name, params={"ignore": 404})

    def mapping(self, index: str) -> dict[str, Any]:
        return dict(self.client.indices.get_mapping(index=index)[index]["mappings"])

    def bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.client.bulk(body=operations))

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index)

    def count(self, index: str) -> int:
        return int(self.client.count(index=index)["count"])

    def search_ids(self, index: str, query: dict[str, Any]) -> list[str]:
        hits = self.client.search(index=index, body={"query": query})["hits"]["hits"]
        return sorted(hit["_id"] for hit in hits)


def message_document(number: int, sender: str) -> dict[str, Any]:
    """A small message document that the strict message mapping accepts."""
    return {
        "@timestamp": f"2024-03-0{number}T10:00:00+00:00",
        "ecs": {"version": "8.11.0"},
        "message": f"Invoice {number}",
        "event": {"kind": "event", "category": ["email"], "dataset": "inbec.message"},
        "email": {
            "from": {"address": [sender]},
            "to": {"address": ["ap@example.com"]},
            "subject": f"Invoice {number}",
            "message_id": f"<m{number}@example.org>",
        },
        "source": {"ip": "192.0.2.10"},
        "inbec": {"case": {"id": "smoke"}, "evidence": {"format": "eml"}},
    }


def bulk_create(index: str) -> list[dict[str, Any]]:
    """Three ``create`` operations with fixed ids, as the exporter will send them."""
    senders = ["ceo@example.com", "attacker@examp1e.com", "ceo@example.com"]
    operations: list[dict[str, Any]] = []
    for number, sender in enumerate(senders, start=1):
        operations.append({"create": {"_index": index, "_id": f"msg-{number}"}})
        operations.append(message_document(number, sender))
    return operations


def exercise(api: SearchApi) -> None:
    """Runs :func:`check_bulk_create`, then removes its templates and indices."""
    try:
        check_bulk_create(api)
    finally:
        # The node serves the whole session: leave it as it was.
        for kind in KINDS:
            api.delete_index(f"{PREFIX}-{kind}-1")
            api.delete_template(f"{PREFIX}-{kind}")


def check_bulk_create(api: SearchApi) -> None:
    """Templates, index creation, bulk create, refresh, count, search, and 409 on re-send."""
    assert api.health() in {"yellow", "green"}

    for kind, template in index_templates(PREFIX).items():
        api.put_template(f"{PREFIX}-{kind}", template)
        api.create_index(f"{PREFIX}-{kind}-1")
        assert api.mapping(f"{PREFIX}-{kind}-1")["dynamic"] == "strict"

    index = f"{PREFIX}-messages-1"
    first = api.bulk(bulk_create(index))
    assert first["errors"] is False, first
    assert [item["create"]["status"] for item in first["items"]] == [201, 201, 201]

    api.refresh(index)
    assert api.count(index) == 3
    query = {"term": {"email.from.address": "ceo@example.com"}}
    assert api.search_ids(index, query) == ["msg-1", "msg-3"]

    again = api.bulk(bulk_create(index))
    assert again["errors"] is True
    assert [item["create"]["status"] for item in again["items"]] == [409, 409, 409]
    assert {item["create"]["error"]["type"] for item in again["items"]} == {
        "version_conflict_engine_exception"
    }
    api.refresh(index)
    assert api.count(index) == 3


def _major(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _elasticsearch(url: str, **options: Any) -> Elasticsearch:
    return Elasticsearch(url, request_timeout=REQUEST_TIMEOUT_S, **options)


def test_opensearch_smoke(opensearch_url: str) -> None:
    api = OpenSearchApi(OpenSearch(hosts=[opensearch_url], timeout=REQUEST_TIMEOUT_S))
    assert _major(api.version()) >= (2, 19)
    exercise(api)


def test_elasticsearch8_smoke(elasticsearch_url: str) -> None:
    api = ElasticsearchApi(_elasticsearch(elasticsearch_url))
    assert _major(api.version())[0] == 8
    exercise(api)


def test_elasticsearch9_smoke(elasticsearch9_url: str) -> None:
    api = ElasticsearchApi(_elasticsearch(elasticsearch9_url))
    assert _major(api.version())[0] == 9
    exercise(api)


def test_elasticsearch_security_needs_credentials(elasticsearch_secure: SecureServer) -> None:
    credentials = elasticsearch_secure.credentials
    with pytest.raises(AuthenticationException):
        _elasticsearch(elasticsearch_secure.url).cluster.health()

    client = _elasticsearch(
        elasticsearch_secure.url, basic_auth=(credentials.username, credentials.password)
    )
    assert client.cluster.health(wait_for_status="yellow", timeout="30s")["status"] in {
        "yellow",
        "green",
    }
