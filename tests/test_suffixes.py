"""Public suffixes without tldextract's import: the same split as tldextract's, checked
against tldextract itself on the list's own rules and on the odd cases of the list."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator

import pytest
import tldextract

from inbec_export import suffixes
from inbec_export.domains import registrable, to_ascii
from inbec_export.suffixes import PRIVATE_SECTION, split_host

_TLDEXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _expected(host: str) -> tuple[str, str, str]:
    parts = _TLDEXTRACT(host)
    return parts.subdomain, parts.domain, parts.suffix


def _icann_rules() -> list[str]:
    path = suffixes.snapshot_path()
    assert path is not None
    public, _, _ = path.read_text("utf-8").partition(PRIVATE_SECTION)
    return suffixes._RULE.findall(public)


def _hosts_from_rules(rules: list[str]) -> Iterator[str]:
    """For each rule, hosts at it, below it and above it, as a mail domain comes (ASCII)."""
    for rule in rules:
        plain = rule.lstrip("!").replace("*", "wild")
        for host in (plain, f"acme.{plain}", f"mail.acme-corp.{plain}", plain.partition(".")[2]):
            if host:
                yield to_ascii(host)


ODD_HOSTS = [
    "mail.acme.co.uk",
    "co.uk",
    "uk",
    "www.ck",  # an exception to the wildcard *.ck
    "a.www.ck",
    "foo.ck",
    "a.foo.ck",
    "city.kawasaki.jp",
    "x.city.kawasaki.jp",
    "a.b.kawasaki.jp",
    "xn--p1ai",
    "test.xn--p1ai",
    "xn--e1afmkfd.xn--p1ai",
    "xn--invalid-.com",
    "127.0.0.1",
    "1.2.3.4",
    "01.2.3.4",
    "256.1.1.1",
    "1.2.3",
    "localhost",
    "a_b.example.com",
    "-a.com",
    "blogspot.com",  # private section: no suffix here
    "x.blogspot.com",
    "s3.amazonaws.com",
    "example.notatld",
    "a.b.c.d.e.example.com.au",
    "com",
]

# Not plain host names: tldextract itself splits them.
NOT_PLAIN = ["host.example.com:25", "[::1]", "a..b.com", "MAIL.ACME.COM", "user@example.org", ""]


@pytest.mark.parametrize("host", ODD_HOSTS + NOT_PLAIN)
def test_odd_hosts_split_as_tldextract_splits_them(host: str) -> None:
    assert split_host(host) == _expected(host)


def test_every_rule_of_the_list_splits_as_tldextract_splits_it() -> None:
    rules = _icann_rules()
    assert len(rules) > 6000
    hosts = sorted(set(_hosts_from_rules(rules)))
    differing = [host for host in hosts if split_host(host) != _expected(host)]
    assert differing == []
    assert len(hosts) > 20_000


def test_random_hosts_under_random_suffixes_split_as_tldextract_splits_them() -> None:
    rules = _icann_rules()
    chance = random.Random(20261205)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789-_"
    hosts = []
    for _ in range(5000):
        labels = [
            "".join(chance.choice(letters) for _ in range(chance.randint(1, 12)))
            for _ in range(chance.randint(0, 3))
        ]
        suffix = chance.choice(rules).lstrip("!").replace("*", chance.choice(["x", "www"]))
        hosts.append(to_ascii(".".join([*labels, suffix])))
    assert [host for host in hosts if split_host(host) != _expected(host)] == []


def test_registrable_domains() -> None:
    assert registrable("Mail.ACME.co.uk.") == "acme.co.uk"
    assert registrable("a.b.foo.ck") == "b.foo.ck"
    assert registrable("a.www.ck") == "www.ck"
    assert registrable("x.blogspot.com") == "blogspot.com"
    assert registrable("mail.example.notatld") == "example.notatld"
    assert registrable("пример.рф") == "xn--e1afmkfd.xn--p1ai"


def test_without_the_snapshot_file_tldextract_splits_every_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(suffixes, "snapshot_path", lambda: None)
    suffixes._tree.cache_clear()
    try:
        assert suffixes._tree() is None
        for host in ODD_HOSTS:
            assert split_host(host) == _expected(host)
    finally:
        suffixes._tree.cache_clear()


def test_plain_hosts_never_import_tldextract() -> None:
    code = (
        "import sys\n"
        "from inbec_export.domains import registrable\n"
        "from inbec_export.case import CaseContext\n"
        "CaseContext(legit_domains=('acme-corp.com',))\n"
        "print(registrable('mail.acme.co.uk'), 'tldextract' in sys.modules, "
        "'requests' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["acme.co.uk", "False", "False"]
