"""Rule ``thread-intrusion``: a lookalike or new outside sender joining a conversation.

Messages are grouped into conversations by the union of their links:

- Message-ID, In-Reply-To and the first and last References ids (RFC 5322 section
  3.6.4): a reply names the message it answers and the thread's root;
- the first 22 bytes of Thread-Index, or of the MAPI conversation index, which Outlook
  keeps for the whole conversation ([MS-OXOMSG] section 2.2.1.3);
- the topic: Thread-Topic, else the subject, with reply and forward prefixes (``Re:``,
  ``Fw:``, ``AW:``, ``WG:``, ``RE[2]:`` ...) and leading ``[tags]`` removed, case folded,
  only when at least two words and eight characters remain (``Re: Invoice`` alone would
  join unrelated threads).

Each conversation is put in time order (the message's best time, then document id, so the
result does not depend on evidence order) and walked. The rule reports, per conversation,
the first later message sent from a lookalike domain (critical), and the first later
message from a new outside sender: an address outside the legitimate and allowlisted
domains that was not a sender or recipient of an earlier message, in a conversation that
already had a participant on a legitimate domain (medium, high when that message has a
reply subject but no References or In-Reply-To, the mark of a reply written from
scratch). The finding concerns the joining message alone (its time is the finding's
time); the evidence names the prior participants, the message before, which links tied
the message in, and whether it is a reply subject without References/In-Reply-To.

Mailing lists: on a list every poster is new to the thread, so a message that came
through a list (List-Id, RFC 2919; List-Post, RFC 2369; or Precedence ``list``/``bulk``)
never counts as a new outside sender joining. A lookalike sender joining is reported
whether the message came through a list or not.

Memory: this rule keeps one compact record per message until ``finish``: its reference
(document id, Message-ID, subject, time, sender), sender and domain, up to 50 recipients,
up to six link keys and whether it came through a list (roughly 1 to 2 KB with typical
headers). The first ``spill_messages`` records (10,000 by default) stay in memory; past
that they move to a temporary SQLite database (see
:mod:`inbec_export.detections._conversations`), and each conversation is read back from
it in order, one at a time. What stays in memory is the union-find of the link keys (8
bytes per distinct key) and, while a conversation is walked, its participants.

Limitations: order comes from the Date header when there is one, which the sender sets;
a backdated message sorts early. Participants beyond the first 50 recipients of a message
are not remembered, so such a recipient replying later counts as new. Without legitimate
domains in the case nothing is reported. The list fields are written by the sender, so an
outside sender who adds them to a message is not reported as new (a lookalike one still
is).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar, NamedTuple

from inbec_export.case import CaseContext
from inbec_export.detections._common import (
    MAX_LISTED_VALUES,
    is_list_message,
    iso,
    lookalike_of,
    match_evidence,
    match_phrase,
    plural,
    ref_evidence,
    ref_order,
    sender_of,
    when,
)
from inbec_export.detections._conversations import (
    DEFAULT_SPILL_MESSAGES,
    ConversationStore,
    sort_key,
)
from inbec_export.detections.base import Rule, register
from inbec_export.domains import LookalikeMatch
from inbec_export.model import Finding, Indicator, MessageRecord, MessageRef, Severity
from inbec_export.readers.rfc822 import decode_thread_index

logger = logging.getLogger(__name__)

#: Most recipients remembered per message as conversation participants.
MAX_RECIPIENTS = 50

#: A topic links messages only with at least this many characters and words.
MIN_TOPIC_CHARS = 8
MIN_TOPIC_WORDS = 2

#: Hex digits of a conversation index that name the conversation (22 bytes).
CONVERSATION_KEY_HEX = 44

_REPLY = r"re|aw|sv|vs|antw|rif|res|odp|ynt"
_FORWARD = r"fwd?|wg|tr|enc|doorst|rv"
_PREFIX = re.compile(
    rf"^\s*(?:(?P<reply>{_REPLY})|(?P<forward>{_FORWARD}))\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_TAG = re.compile(r"^\s*\[[^\[\]]{1,40}\]\s*")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def normalise_topic(text: str | None) -> tuple[str | None, bool]:
    """The conversation topic of a subject and whether it carries a reply prefix.

    Returns ``(topic, is_reply)``; ``topic`` is None when too short to link messages.
    """
    if not text:
        return None, False
    rest = text
    is_reply = False
    while True:
        prefix = _PREFIX.match(rest)
        if prefix is not None:
            is_reply = is_reply or prefix.group("reply") is not None
            rest = rest[prefix.end() :]
            continue
        tag = _TAG.match(rest)
        if tag is None:
            break
        rest = rest[tag.end() :]
    topic = " ".join(rest.casefold().split())
    if len(topic) < MIN_TOPIC_CHARS or len(topic.split()) < MIN_TOPIC_WORDS:
        return None, is_reply
    return topic, is_reply


def conversation_key(thread_index: str | None, conversation_index: str | None) -> str | None:
    """Hex of the first 22 bytes of a Thread-Index (base64) or conversation index (hex or
    base64), or None."""
    for value in (thread_index, conversation_index):
        if not value:
            continue
        text = value.strip()
        if _HEX.match(text) and len(text) >= CONVERSATION_KEY_HEX:
            return text[:CONVERSATION_KEY_HEX].lower()
        key = decode_thread_index(text)
        if key:
            return key
    return None


class _Message(NamedTuple):
    ref: MessageRef
    sender: str | None
    domain: str | None
    recipients: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    reply_without_references: bool
    via_list: bool


def _links(record: MessageRecord) -> tuple[tuple[str, str], ...]:
    links: list[tuple[str, str]] = []
    if record.message_id:
        links.append(("message-id", "m:" + record.message_id))
    if record.in_reply_to:
        links.append(("in-reply-to", "m:" + record.in_reply_to))
    for reference in dict.fromkeys((record.references or [])[:1] + (record.references or [])[-1:]):
        links.append(("references", "m:" + reference))
    index = conversation_key(record.thread_index, record.conversation_index)
    if index:
        links.append(("thread-index", "t:" + index))
    topic, _ = normalise_topic(record.thread_topic or record.subject)
    if topic:
        links.append(("topic", "s:" + topic))
    return tuple((kind, sys.intern(key)) for kind, key in dict.fromkeys(links))


@register
class ThreadIntrusionRule(Rule):
    """A lookalike or new outside sender joining an existing conversation."""

    id = "thread-intrusion"
    name = "Conversation joined by a lookalike or new outside sender"
    severity = "critical"
    description = (
        "A sender on a lookalike domain, or a new sender outside the legitimate domains, "
        "joins an existing conversation."
    )

    #: Records kept in memory before the rule's conversation store moves to disk.
    spill_messages: ClassVar[int] = DEFAULT_SPILL_MESSAGES

    #: Where the store's temporary folder is made (None: the system's temporary folder).
    spill_dir: ClassVar[Path | None] = None

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._store: ConversationStore[_Message] = ConversationStore(
            self.spill_messages, self.spill_dir
        )

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        links = _links(record)
        if not links:
            return ()
        sender = sender_of(record)
        recipients = [a.address for a in (*record.to, *record.cc, *record.bcc) if a.address]
        _, is_reply = normalise_topic(record.subject)
        ref = MessageRef.of(record)
        message = _Message(
            ref=ref,
            sender=sys.intern(sender.address) if sender else None,
            domain=sys.intern(sender.domain) if sender else None,
            recipients=tuple(sys.intern(a) for a in recipients[:MAX_RECIPIENTS]),
            links=links,
            reply_without_references=(
                is_reply and not record.in_reply_to and not record.references
            ),
            via_list=is_list_message(record),
        )
        self._store.add([key for _, key in links], sort_key(ref), message)
        return ()

    def finish(self) -> Iterable[Finding]:
        findings: list[Finding] = []
        try:
            for members in self._store.conversations():
                findings.extend(self._walk(members))
        finally:
            self._store.close()
        findings.sort(key=lambda finding: ref_order(finding.messages[-1]))
        return findings

    def close(self) -> None:
        self._store.close()

    def _walk(self, members: Iterator[_Message]) -> list[Finding]:
        """The findings of one conversation, its messages given in time order."""
        participants: dict[str, None] = {}
        legit_before = False
        lookalike_done = outside_done = False
        findings: list[Finding] = []
        conversation: dict[str, object] = {}
        first: _Message | None = None
        previous: _Message | None = None
        count = replies = 0
        for index, message in enumerate(members):
            if first is None:
                first = message
                conversation = _conversation(message)
            count += 1
            replies += message.reply_without_references
            sender, domain = message.sender, message.domain
            if previous is not None and sender and domain and not self.case.is_trusted(domain):
                match = lookalike_of(self.case, domain)
                if match is not None and not lookalike_done:
                    lookalike_done = True
                    findings.append(
                        self._finding(message, previous, index, participants, conversation, match)
                    )
                elif (
                    match is None
                    and not outside_done
                    and not message.via_list
                    and legit_before
                    and sender not in participants
                ):
                    outside_done = True
                    findings.append(
                        self._finding(message, previous, index, participants, conversation, None)
                    )
            for address in (sender, *message.recipients):
                if address:
                    participants.setdefault(address)
                    legit_before = legit_before or self.case.is_legit(address.rpartition("@")[2])
            previous = message
        if previous is not None:
            conversation["message_count"] = count
            conversation["last_seen"] = iso(previous.ref.timestamp)
            conversation["replies_without_references"] = replies
        for finding in findings:
            finding.evidence["conversation"] = dict(conversation)
        return findings

    def _finding(
        self,
        message: _Message,
        previous: _Message,
        index: int,
        participants: dict[str, None],
        conversation: dict[str, object],
        match: LookalikeMatch | None,
    ) -> Finding:
        sender, domain = message.sender or "", message.domain or ""
        topic = conversation["topic"]
        prior = sorted(participants)
        severity: Severity
        if match is not None:
            who = f"{sender} on {domain}, which {match_phrase(match)},"
            severity = "critical"
        else:
            who = f"New outside sender {sender}"
            severity = "high" if message.reply_without_references else "medium"
        reason = (
            f"{who} joined the conversation {topic!r} at {when(message.ref.timestamp)} after "
            f"{plural(index, 'message')} among {plural(len(prior), 'participant')}; previous "
            f"message from {previous.sender or 'an unknown sender'} at "
            f"{when(previous.ref.timestamp)}"
        )
        if message.reply_without_references:
            reason += "; reply subject without References or In-Reply-To"
        # Every message that shares a key is in this conversation: the store's count of a
        # key is its count here.
        linked_by = sorted({kind for kind, key in message.links if self._store.uses(key) > 1})
        evidence: dict[str, object] = {
            "sender": sender,
            "domain": domain,
            "lookalike": match_evidence(match) if match is not None else None,
            "prior_participants": prior[:MAX_LISTED_VALUES],
            "prior_participant_count": len(prior),
            "prior_message_count": index,
            "previous_message": ref_evidence(previous.ref),
            "linked_by": linked_by,
            "reply_without_references": message.reply_without_references,
            # Filled in when the whole conversation has been walked.
            "conversation": conversation,
        }
        return Finding(
            rule_id=self.id,
            rule_name=self.name,
            severity=severity,
            reason=reason,
            key=message.ref.doc_id,
            evidence=evidence,
            messages=[message.ref],
            indicators=[Indicator("email-addr", sender), Indicator("domain-name", domain)],
            first_seen=message.ref.timestamp,
            last_seen=message.ref.timestamp,
        )


def _conversation(first: _Message) -> dict[str, object]:
    """The conversation evidence of a finding as known from its first message; the count,
    last time and replies are set once the conversation has been walked."""
    return {
        "topic": first.ref.subject or "(no subject)",
        "message_count": 0,
        "first_seen": iso(first.ref.timestamp),
        "last_seen": None,
        "replies_without_references": 0,
    }
