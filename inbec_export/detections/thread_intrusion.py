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

Memory: this rule keeps one compact tuple per message until ``finish``: its reference
(document id, Message-ID, subject, time, sender), sender and domain, up to 50 recipients,
up to six link keys (strings interned, so repeated ids and addresses are shared) and
whether it came through a list, plus one union-find entry per linked key. That is roughly
1 to 2 KB per message with typical headers: about 150 MB for 100,000 messages.

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
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

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

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._messages: list[_Message] = []
        self._parent: dict[str, str] = {}

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        links = _links(record)
        if not links:
            return ()
        sender = sender_of(record)
        recipients = [a.address for a in (*record.to, *record.cc, *record.bcc) if a.address]
        _, is_reply = normalise_topic(record.subject)
        self._messages.append(
            _Message(
                ref=MessageRef.of(record),
                sender=sys.intern(sender.address) if sender else None,
                domain=sys.intern(sender.domain) if sender else None,
                recipients=tuple(sys.intern(a) for a in recipients[:MAX_RECIPIENTS]),
                links=links,
                reply_without_references=(
                    is_reply and not record.in_reply_to and not record.references
                ),
                via_list=is_list_message(record),
            )
        )
        for _, key in links[1:]:
            self._union(links[0][1], key)
        return ()

    def _find(self, key: str) -> str:
        parent = self._parent
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while key != root:
            parent[key], key = root, parent[key]
        return root

    def _union(self, left: str, right: str) -> None:
        left_root, right_root = self._find(left), self._find(right)
        if left_root != right_root:
            # The smaller key becomes the root, so the grouping ignores evidence order.
            low, high = sorted((left_root, right_root))
            self._parent[high] = low

    def finish(self) -> Iterable[Finding]:
        groups: dict[str, list[_Message]] = {}
        for message in self._messages:
            groups.setdefault(self._find(message.links[0][1]), []).append(message)
        findings: list[Finding] = []
        for members in groups.values():
            if len(members) > 1:
                members.sort(key=lambda message: ref_order(message.ref))
                findings.extend(self._walk(members))
        findings.sort(key=lambda finding: ref_order(finding.messages[-1]))
        return findings

    def _walk(self, members: list[_Message]) -> Iterator[Finding]:
        participants: dict[str, None] = {}
        legit_before = False
        lookalike_done = outside_done = False
        key_counts = Counter(key for message in members for _, key in message.links)
        for index, message in enumerate(members):
            sender, domain = message.sender, message.domain
            if index and sender and domain and not self.case.is_trusted(domain):
                match = lookalike_of(self.case, domain)
                if match is not None and not lookalike_done:
                    lookalike_done = True
                    yield self._finding(members, index, participants, key_counts, match)
                elif (
                    match is None
                    and not outside_done
                    and not message.via_list
                    and legit_before
                    and sender not in participants
                ):
                    outside_done = True
                    yield self._finding(members, index, participants, key_counts, None)
            for address in (sender, *message.recipients):
                if address:
                    participants.setdefault(address)
                    legit_before = legit_before or self.case.is_legit(address.rpartition("@")[2])

    def _finding(
        self,
        members: list[_Message],
        index: int,
        participants: dict[str, None],
        key_counts: Counter[str],
        match: LookalikeMatch | None,
    ) -> Finding:
        message, previous = members[index], members[index - 1]
        sender, domain = message.sender or "", message.domain or ""
        topic = members[0].ref.subject or "(no subject)"
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
        linked_by = sorted({kind for kind, key in message.links if key_counts[key] > 1})
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
            "conversation": {
                "topic": topic,
                "message_count": len(members),
                "first_seen": iso(members[0].ref.timestamp),
                "last_seen": iso(members[-1].ref.timestamp),
                "replies_without_references": sum(m.reply_without_references for m in members),
            },
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
