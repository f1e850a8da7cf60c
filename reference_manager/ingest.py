"""The manager's protocol core (sans-IO): enrollment and report rules, receipts.

Plain functions over plain records and generated messages; the adapter (app.py) reads the
records from the store and calls these in order. Every refusal is a `ProtocolError`.

Report order (spec section 8.3): signature header → signer known and not revoked → signature
over the exact bytes → XML edge + XSD → agentId equals signer → clock skew → dedupe on
reportId (in the store, by its primary key) → meaning (3001, kept in ReportRows.problem).
Enrollment: signature header → XML edge → signer is the agentId → signature with the
enclosed key → clock skew → token → key conflict → storage.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync_manager.extract import ReportRows, parse_datetime, report_rows

SKEW = timedelta(seconds=300)  # MS-SEC-15
REPLAY_HORIZON = timedelta(days=400)  # MS-DEL-19: report ids are kept at least this long


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    public_key: str  # base64 of the 32 raw Ed25519 bytes
    revoked: bool = False
    # (key, superseded_at) of keys rotated away from (MS-SEC-8), newest first
    previous: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True)
class TokenRecord:
    token_hash: str
    expires_at: datetime  # aware
    used_by: str | None = None
    agent_id: str | None = None  # a re-enrollment token of this agent (MS-SEC-8)


class Decision(Enum):
    REGISTER = "register"  # store the agent and spend the token
    DUPLICATE = "duplicate"  # already enrolled with this key: answer duplicate, change nothing
    ROTATE = "rotate"  # a re-enrollment token of this agent: the new key replaces the old


# --- enrollment tokens -------------------------------------------------------------------


def new_token() -> str:
    """A one-time enrollment token: 32 random bytes, URL-safe base64 (XSD `Token`)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored hashed: a database leak gives no usable token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- enrollment ----------------------------------------------------------------------------


def read_enrollment(raw: bytes) -> model.Enrollment:
    """The XML edge and the XSD for an Enrollment."""
    return xml_edge.parse_message(raw, expect=("Enrollment",)).obj


def check_enrollment(
    enrollment: model.Enrollment,
    raw: bytes,
    sig: signing.Signature,
    now: datetime,
    skew: timedelta = SKEW,
) -> None:
    """MS-SEC-5, MS-SEC-15: the signer is the enrolling agent, the signature verifies with the
    enclosed key (proof of possession), and createdAt is within the skew window."""
    if sig.agent_id != enrollment.agent_id:
        raise ProtocolError(
            "AGENT_MISMATCH",
            f"the signature names agent {sig.agent_id}, the enrollment {enrollment.agent_id}",
            element="agentId",
            message_id=enrollment.message_id,
        )
    signing.verify(public_key_b64(enrollment), raw, sig)
    created = parse_datetime(str(enrollment.created_at), "createdAt")
    off = abs(created - now)
    if off > skew:
        raise ProtocolError(
            "CLOCK_SKEW",
            f"createdAt differs from the manager's clock by {int(off.total_seconds())} s; the "
            f"window is {int(skew.total_seconds())} s: check the agent's clock",
            element="createdAt",
            message_id=enrollment.message_id,
        )


def public_key_b64(enrollment: model.Enrollment) -> str:
    return base64.b64encode(enrollment.public_key.value).decode("ascii")


def decide_enrollment(
    enrollment: model.Enrollment,
    token: TokenRecord | None,
    agent: AgentRecord | None,
    now: datetime,
) -> Decision:
    """MS-SEC-2..8: is this enrollment new, a repeat of one already done, or refused?"""
    agent_id = enrollment.agent_id
    key = public_key_b64(enrollment)
    repeat = agent is not None and agent.public_key == key
    if token is None:
        raise ProtocolError("INVALID_ENROLLMENT_TOKEN", "the enrollment token is unknown")
    if token.agent_id is not None and token.agent_id != agent_id:
        raise ProtocolError(
            "INVALID_ENROLLMENT_TOKEN",
            "the enrollment token was issued for the re-enrollment of another agent",
        )
    if token.used_by is not None and token.used_by != agent_id:
        raise ProtocolError(
            "ENROLLMENT_TOKEN_USED", "the enrollment token was already used by another agent"
        )
    # A lost answer makes an agent repeat its enrollment, perhaps after the token expired.
    if token.expires_at <= now and not (token.used_by == agent_id and repeat):
        raise ProtocolError("INVALID_ENROLLMENT_TOKEN", "the enrollment token has expired")
    if agent is not None:
        if agent.revoked:
            raise ProtocolError("AGENT_REVOKED", f"the agent {agent_id} was revoked")
        if not repeat and token.agent_id == agent_id and token.used_by is None:
            return Decision.ROTATE
        if not repeat:
            raise ProtocolError(
                "AGENT_ALREADY_ENROLLED",
                f"the agent {agent_id} is enrolled with a different public key",
            )
        return Decision.DUPLICATE
    return Decision.REGISTER


# --- reports -------------------------------------------------------------------------------


def signer(header: str | None) -> signing.Signature:
    """Step 1: parse the signature header (2001 missing, 2003 malformed)."""
    return signing.parse(header)


def authenticate(sig: signing.Signature, raw: bytes, agent: AgentRecord | None) -> datetime | None:
    """Steps 2-3: the signer is an enrolled, unrevoked agent and the signature verifies.

    Returns None for the current key; for a superseded key (MS-SEC-8), the time it was
    superseded: the report must have been created before it (`check_report`).
    """
    if agent is None:
        raise ProtocolError("UNKNOWN_AGENT", f"no enrolled agent has the id {sig.agent_id!r}")
    if agent.revoked:
        raise ProtocolError("AGENT_REVOKED", f"the agent {agent.agent_id} was revoked")
    try:
        signing.verify(agent.public_key, raw, sig)
        return None
    except ProtocolError as exc:
        for key, superseded_at in agent.previous:
            try:
                signing.verify(key, raw, sig)
            except ProtocolError:
                continue
            return superseded_at
        raise exc


def read_report(raw: bytes) -> ReportRows:
    """Step 4: the XML edge and the XSD, then the rows to store (prose rules: 3001)."""
    root = xml_edge.parse_tree(raw)
    kind = root.tag.rpartition("}")[2]
    if kind != "Report":
        raise ProtocolError(
            "UNKNOWN_MESSAGE", f"this endpoint accepts Report, not {kind}", element=kind
        )
    xml_edge.validate_tree(root)
    return report_rows(root)


def check_report(
    rows: ReportRows,
    signer_id: str,
    now: datetime,
    skew: timedelta = SKEW,
    key_superseded_at: datetime | None = None,
) -> None:
    """Steps 5-6: the document's agentId is the signer's; createdAt is not in the future; a
    report signed with a superseded key was created, and its devices polled, before the
    rotation."""
    if key_superseded_at is not None and rows.created_at >= key_superseded_at:
        raise ProtocolError(
            "BAD_SIGNATURE",
            "the report is signed with a key the agent replaced before the report's createdAt; "
            "sign with the current key",
            message_id=rows.report_id,
        )
    if key_superseded_at is not None:  # MS-SEC-20: a stolen old key cannot inject new readings
        late = [d.device_key for d in rows.devices if d.polled_at >= key_superseded_at]
        if late:
            raise ProtocolError(
                "BAD_SIGNATURE",
                f"the report is signed with a key the agent replaced, but device {late[0]} was "
                "polled after the rotation; sign with the current key",
                message_id=rows.report_id,
            )
    if rows.agent_id != signer_id:
        raise ProtocolError(
            "AGENT_MISMATCH",
            f"the report says agentId {rows.agent_id} but was signed by {signer_id}",
            element="agentId",
            message_id=rows.report_id,
        )
    ahead = rows.created_at - now
    if -ahead > REPLAY_HORIZON:
        raise ProtocolError(
            "CLOCK_SKEW",
            f"createdAt is older than the {REPLAY_HORIZON.days}-day replay horizon",
            element="createdAt",
            message_id=rows.report_id,
        )
    if ahead > skew:
        raise ProtocolError(
            "CLOCK_SKEW",
            f"createdAt is {int(ahead.total_seconds())} s ahead of the manager's clock; the "
            f"window is {int(skew.total_seconds())} s: check the agent's clock",
            element="createdAt",
            message_id=rows.report_id,
        )
    late = [d for d in rows.devices if d.polled_at > rows.created_at + skew]
    if late and rows.problem is None:  # meaning: raised by the store after idempotence
        rows.problem = ProtocolError(
            "INVALID_VALUE",
            f"the device {late[0].device_key} was polled at {late[0].polled_at.isoformat()}, "
            f"after the report's createdAt plus the {int(skew.total_seconds())} s skew window "
            "(MS-OWN-4): a snapshot cannot be newer than its report",
            element="device/@polledAt",
            requirement="MS-OWN-4",
            message_id=rows.report_id,
        )


def digest(raw: bytes) -> str:
    """What 'the same report' means for idempotency: SHA-256 of the exact bytes."""
    return hashlib.sha256(raw).hexdigest()


def replayed(report_id: str) -> ProtocolError:
    return ProtocolError(
        "REPLAYED_MESSAGE",
        f"the report id {report_id} was stored before with different content; "
        "a new report needs a new id",
        message_id=report_id,
    )


# --- receipts ------------------------------------------------------------------------------


def receipt(
    message_id: str,
    agent_id: str,
    duplicate: bool,
    now: datetime,
    devices_stored: int | None = None,
) -> model.Receipt:
    status = model.ReceiptStatus.DUPLICATE if duplicate else model.ReceiptStatus.ACCEPTED
    return model.Receipt(
        version=xml_edge.PROTOCOL_VERSION,
        message_id=message_id,
        agent_id=agent_id,
        status=status,
        received_at=XmlDateTime.from_datetime(now.astimezone(UTC).replace(microsecond=0)),
        devices_stored=devices_stored,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)
