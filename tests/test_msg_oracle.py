"""Compare the .msg reader with msgconvert (Email::Outlook::Message), an independent reader.

msgconvert turns each .msg into an .eml; the standard library parses that, and sender,
recipients, subject and Message-ID must agree with our record. Every known difference is
listed per file in :data:`EXPECTED`, with the reason; anything else fails.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import os
import shutil
import subprocess
from email.message import Message
from email.utils import getaddresses
from pathlib import Path

import pytest
from conftest import CORPUS_DIR

from inbec_export.model import EvidenceFile, MessageRecord
from inbec_export.readers.base import hash_file
from inbec_export.readers.msg import MsgReader

pytestmark = [pytest.mark.oracle, pytest.mark.corpus]

#: Seconds one msgconvert run may take.
MSGCONVERT_TIMEOUT_S = 60

#: Corpus files that are not mail (contacts, appointments...): nothing to compare.
NON_MAIL_FILES = {
    "hughbe_Contact_Group.msg",
    "hughbe_Journal_Entry.msg",
    "hughbe_Meeting.msg",
    "hughbe_Simple_Task.msg",
    "msgreader_A_schedule.msg",
    "msgreader_contactUnicode.msg",
}

#: msgconvert writes ``name <address>`` without quoting the name. When the display name
#: is itself an address (``a@b.c <a@b.c>``), RFC 5322 parsers read two mailboxes, so the
#: oracle lists each such address twice. Our value must equal the oracle's with the
#: duplicates removed, and the oracle must really have them.
DUPLICATED_BY_ORACLE = "duplicated by oracle"

#: Per file, per field: how the oracle differs, and why.
EXPECTED: dict[str, dict[str, tuple[str, object]]] = {
    "hughbe_discussion.msg": {"from": (DUPLICATED_BY_ORACLE, None)},
    "msg-extractor_strangeDate.msg": {"to": (DUPLICATED_BY_ORACLE, None)},
    "msgreader_200_recipients.msg": {"to": (DUPLICATED_BY_ORACLE, None)},
    "msgreader_attachAndInline.msg": {"to": (DUPLICATED_BY_ORACLE, None)},
    "msgreader_nonUnicodeMail.msg": {"to": (DUPLICATED_BY_ORACLE, None)},
    "outlook-message-parser_attachment_bracket_name.msg": {"to": (DUPLICATED_BY_ORACLE, None)},
    "outlook-message-parser_chinese_message.msg": {"to": (DUPLICATED_BY_ORACLE, None)},
    # msgconvert builds To/Cc from the names in PidTagDisplayTo/PidTagDisplayCc and looks
    # them up in the recipient table. This file (written by jotlmsg) has no PidTagDisplayTo,
    # so msgconvert writes no To; the recipient table has john@doe.com as a To recipient.
    "jotlmsg_many-attachments.msg": {
        "to": ("oracle empty", ["john@doe.com"]),
    },
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _mail_files() -> list[str]:
    folder = CORPUS_DIR / "msg"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.msg") if p.name not in NON_MAIL_FILES)


@pytest.fixture(scope="module")
def msgconvert() -> str:
    found = shutil.which("msgconvert")
    if found is None:
        if _in_ci():
            pytest.fail("msgconvert (libemail-outlook-message-perl) is required under CI")
        pytest.skip("msgconvert (libemail-outlook-message-perl) is not installed")
    return found


def _convert(msgconvert: str, source: Path, workdir: Path) -> Message:
    target = workdir / "converted.eml"
    completed = subprocess.run(
        [msgconvert, "--outfile", str(target), str(source)],
        cwd=workdir,
        capture_output=True,
        timeout=MSGCONVERT_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")[:500]
    return email.message_from_bytes(target.read_bytes(), policy=email.policy.compat32)


def _oracle_fields(message: Message) -> dict[str, object]:
    def addresses(name: str) -> list[str]:
        values = [str(v) for v in message.get_all(name, [])]
        return sorted(address.lower() for _, address in getaddresses(values) if address)

    subject = message.get("Subject")
    if subject is not None:
        subject = str(email.header.make_header(email.header.decode_header(str(subject))))
        subject = " ".join(subject.split()) or None
    message_id = message.get("Message-ID")
    return {
        "from": addresses("From"),
        "to": addresses("To"),
        "cc": addresses("Cc"),
        "subject": subject,
        "message_id": str(message_id).strip().strip("<>") if message_id else None,
    }


def _our_fields(record: MessageRecord) -> dict[str, object]:
    return {
        "from": sorted(a.address for a in record.from_ if a.address),
        "to": sorted(a.address for a in record.to if a.address),
        "cc": sorted(a.address for a in record.cc if a.address),
        "subject": record.subject,
        "message_id": record.message_id,
    }


def _top_record(path: Path) -> MessageRecord:
    size, sha256 = hash_file(path)
    evidence = EvidenceFile(path=str(path), format="msg", size=size, sha256=sha256)
    found = [
        e
        for e in MsgReader().read(evidence)
        if isinstance(e, MessageRecord) and e.item_id == "message"
    ]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("name", _mail_files())
def test_agrees_with_msgconvert(
    name: str, corpus_dir: Path, msgconvert: str, tmp_path: Path
) -> None:
    path = corpus_dir / "msg" / name
    ours = _our_fields(_top_record(path))
    theirs = _oracle_fields(_convert(msgconvert, path, tmp_path))
    expected = EXPECTED.get(name, {})

    for field, our_value in ours.items():
        if field not in expected:
            assert our_value == theirs[field], field
            continue
        kind, value = expected[field]
        if kind == DUPLICATED_BY_ORACLE:
            oracle = theirs[field]
            assert isinstance(oracle, list)
            assert len(set(oracle)) < len(oracle), f"{field}: oracle no longer duplicates"
            assert our_value == sorted(set(oracle)), field
        elif kind == "oracle empty":
            assert theirs[field] == [], field
            assert our_value == value, field
        else:
            pytest.fail(f"unknown expectation {kind!r}")


def test_expectations_name_real_mail_files() -> None:
    files = _mail_files()
    if not files:
        pytest.skip("the shared evidence corpus is not beside this checkout")
    assert set(EXPECTED) <= set(files)
