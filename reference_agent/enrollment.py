"""The agent's identity and its one-time enrollment (MS-SEC-1..8).

In the state dir, created once and kept for life:

- `agent-id`: the agent's UUID (MS-SEC-3);
- `agent-key.pem`: its Ed25519 private key, mode 0600;
- `enrolled`: written after the manager's Receipt for the Enrollment: the manager URL and a
  hash of the token, so that a new URL or token means a new enrollment (MS-PRV-8).

Files are written to a temporary name, fsynced and renamed, so a crash never leaves half a key.

    identity = load_or_create_identity(state_dir)
    result = await enroll(settings, identity, transport, state_dir, stop=stop_event)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import logging
import os
import random
import socket
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from xsdata.models.datatype import XmlDateTime

import metersync
import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync_agent.backoff import Delivered, Refused, RetryLater, next_delay
from metersync_agent.config import Settings

log = logging.getLogger("metersync.agent.enrollment")

AGENT_ID_FILE = "agent-id"
KEY_FILE = "agent-key.pem"
ENROLLED_FILE = "enrolled"
SOFTWARE = model.SoftwareInfo(
    vendor="MeterSync", product="reference-agent", version=metersync.__version__
)
CAPABILITIES = [
    model.Capability.HTTP,
    model.Capability.SMTP,
    model.Capability.SNMPV3,
    model.Capability.UPDATE,
    model.Capability.CHANNEL_WEBSOCKET,  # Agent-Channel (MS-CONF-6): both transports
    model.Capability.CHANNEL_LONGPOLL,
    model.Capability.TRAP,  # Agent-Trap: the trap receiver (chapter 19)
]


@dataclass(frozen=True)
class AgentIdentity:
    agent_id: str
    key: Ed25519PrivateKey

    def sign(self, data: bytes) -> str:
        """The MeterSync-Signature header value for `data`."""
        return signing.sign(self.key, data, self.agent_id)

    @property
    def public_key(self) -> str:
        return signing.public_key_b64(self.key)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` durably: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def prepare_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(state_dir, 0o700)


def load_or_create_identity(state_dir: Path) -> AgentIdentity:
    """The agent id and key pair from the state dir, created on first use."""
    prepare_state_dir(state_dir)
    id_path, key_path = state_dir / AGENT_ID_FILE, state_dir / KEY_FILE
    if id_path.exists():
        agent_id = id_path.read_text(encoding="ascii").strip()
        uuid.UUID(agent_id)  # refuse a damaged file loudly rather than invent a new identity
    else:
        agent_id = str(uuid.uuid4())
        write_atomic(id_path, agent_id.encode() + b"\n", 0o644)
        log.info("created agent id %s", agent_id)
    if key_path.exists():
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            log.warning("the agent key %s had mode %o; setting 0600", key_path, mode)
            os.chmod(key_path, 0o600)
        key = signing.load_private_key(key_path.read_bytes())
    else:
        key = signing.generate_key()
        write_atomic(key_path, signing.private_key_pem(key), 0o600)
        log.info("created the agent's Ed25519 key pair in %s", key_path)
    return AgentIdentity(agent_id, key)


def now_xml() -> XmlDateTime:
    return XmlDateTime.from_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0))


def enrollment_bytes(identity: AgentIdentity, token: str, message_id: str | None = None) -> bytes:
    """The Enrollment message (validated before it leaves)."""
    msg = model.Enrollment(
        version=xml_edge.PROTOCOL_VERSION,
        message_id=message_id or str(uuid.uuid4()),
        agent_id=identity.agent_id,
        created_at=now_xml(),
        token=token,
        software=SOFTWARE,
        hostname=socket.gethostname()[:255] or None,
        capability=list(CAPABILITIES),
        public_key=model.PublicKey(
            value=base64.b64decode(identity.public_key),  # raw bytes; xsdata writes base64
            algorithm=model.SignatureAlgorithm.ED25519,
        ),
    )
    return xml_edge.to_bytes(msg)


def _marker(manager_url: str, token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f"{manager_url.rstrip('/')}\n{digest}\n"


def is_enrolled(state_dir: Path, manager_url: str, token: str) -> bool:
    """Enrolled with this manager and this token (a new one of either means enroll again)."""
    path = state_dir / ENROLLED_FILE
    if not path.exists():
        return False
    return path.read_text(encoding="utf-8").startswith(_marker(manager_url, token))


@dataclass(frozen=True)
class EnrollResult:
    ok: bool
    message: str
    already: bool = False


class _Transport:  # the part of HttpTransport this module uses
    async def post_enrollment(self, body: bytes, signature: str, message_id: str) -> object: ...


async def enroll(
    settings: Settings,
    identity: AgentIdentity,
    transport: _Transport,
    state_dir: Path,
    *,
    stop: asyncio.Event | None = None,
    max_wait: float | None = None,
    rng: random.Random | None = None,
) -> EnrollResult:
    """Enroll once with the one-time token; retried like any delivery until stop or max_wait.

    Each attempt is a new signed Enrollment (new messageId, current createdAt, so a long outage
    never ends in a clock-skew refusal); the manager answers a repeat of the same agent and key
    with a duplicate Receipt (MS-SEC-2), which counts as success.
    """
    if is_enrolled(state_dir, settings.manager_url, settings.enrollment_token):
        return EnrollResult(True, "already enrolled", already=True)
    loop = asyncio.get_running_loop()
    deadline = None if max_wait is None else loop.time() + max_wait
    attempt = 0
    while True:
        message_id = str(uuid.uuid4())
        body = enrollment_bytes(identity, settings.enrollment_token, message_id)
        outcome = await transport.post_enrollment(body, identity.sign(body), message_id)
        if isinstance(outcome, Delivered):
            write_atomic(
                state_dir / ENROLLED_FILE,
                (_marker(settings.manager_url, settings.enrollment_token) + message_id).encode(),
                0o600,
            )
            log.info("enrolled agent %s with %s", identity.agent_id, settings.manager_url)
            return EnrollResult(True, f"enrolled agent {identity.agent_id}")
        if isinstance(outcome, Refused):
            text = f"enrollment refused: {outcome.code} {outcome.name}: {outcome.message}"
            log.error("%s", text)
            return EnrollResult(False, text)
        assert isinstance(outcome, RetryLater)
        delay = next_delay(attempt, outcome.retry_after, rng)
        attempt += 1
        if deadline is not None and loop.time() + delay > deadline:
            return EnrollResult(False, f"enrollment not delivered: {outcome.reason}")
        log.warning("enrollment not delivered (%s); next try in %.1f s", outcome.reason, delay)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return EnrollResult(False, "stopped before enrollment was delivered")
