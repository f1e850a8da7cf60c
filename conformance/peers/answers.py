"""Scripted answers the harness manager gives to report posts, and what an agent must make of them.

Each answer is built as raw bytes, so the harness controls exactly what goes on the wire
(prefixes, comments, a DOCTYPE, a foreign namespace). `EXPECT` says what a conforming agent
does with the report after that answer:

- ``delivered``: it is a receipt for this report: the report is never posted again;
- ``retry``: not a receipt: the same report is posted again later (Table 11-1);
- ``refused``: a refusal: the report goes to the rejected area and is never posted again.

``accept`` answers as the manager normally does (the retry of the previous answer's report).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from quart import Response

from metersync_conformance.wire import CONTENT_TYPE, now, xml_time

HOLD_SECONDS = 14.0  # the "slow" answer: well beyond the provisioned HTTP timeout
ELSEWHERE = "/v1/elsewhere"  # where the "redirect" answer points; an agent must not go there
XXE_PATH = "/xxe"  # the external entity of the "doctype" answer; must never be fetched
VENDOR_NS = "urn:example:conformance-vendor"

EXPECT: dict[str, str] = {
    "wrong-id": "retry",
    "other-agent": "retry",  # played only when asked for (a broken agent's run)
    "duplicate": "delivered",
    "extended": "delivered",
    "prefixed": "delivered",
    "refused": "refused",
    "vendor-refused": "refused",
    "vendor-busy": "retry",
    "reserved-busy": "retry",
    "redirect": "retry",
    "doctype": "retry",
    "garbage": "retry",
    "invalid": "retry",
    "wrong-root": "retry",
    "v2": "retry",
    "deep": "retry",
    "slow": "retry",
}

# The requirement each answer tests (the checks report them under these ids).
REQUIREMENT: dict[str, str] = {
    "wrong-id": "MS-HTTP-10",
    "other-agent": "MS-HTTP-10",
    "duplicate": "MS-DEL-3",
    "extended": "MS-VER-4",
    "prefixed": "MS-XML-10",
    "refused": "MS-DEL-12",
    "vendor-refused": "MS-ERR-3",
    "vendor-busy": "MS-ERR-3",
    "reserved-busy": "MS-ERR-3",
    "redirect": "MS-HTTP-15",
    "doctype": "MS-XML-4",
    "garbage": "MS-XML-3",
    "invalid": "MS-XML-5",
    "wrong-root": "MS-XML-6",
    "v2": "MS-VER-2",
    "deep": "MS-LIM-2",
    "slow": "MS-HTTP-14",
}
DEFAULT = tuple(n for n in EXPECT if n != "other-agent")  # what a full run plays


def script(names: tuple[str, ...] | None = None) -> list[str]:
    """The answers played, in order (default: all): every "retry" answer is followed by
    "accept" for the resend, so the agent's backoff restarts from its first step each time."""
    out: list[str] = []
    for name in names or DEFAULT:
        out.append(name)
        if EXPECT[name] == "retry":
            out.append("accept")
    return out


def _receipt(
    message_id: str,
    agent_id: str,
    status: str = "accepted",
    *,
    ns: str = "urn:metersync:v1",
    inner: str = "",
    received: bool = True,
) -> bytes:
    when = f"<receivedAt>{xml_time(now())}</receivedAt>" if received else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Receipt xmlns="{ns}" version="1.0">'
        f"<messageId>{message_id}</messageId><agentId>{agent_id}</agentId>"
        f"<status>{status}</status>{when}<devicesStored>0</devicesStored>{inner}</Receipt>"
    ).encode()


def _error(code: int, name: str, message_id: str, retry_after: int | None = None) -> bytes:
    ra = f"<retryAfter>{retry_after}</retryAfter>" if retry_after is not None else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error xmlns="urn:metersync:v1" version="1.0">'
        f"<code>{code}</code><name>{name}</name><message>the conformance harness refuses this "
        f"report on purpose</message><messageId>{message_id}</messageId>{ra}</Error>"
    ).encode()


def _xml(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, content_type=CONTENT_TYPE, headers=headers or {})


def _deep(levels: int) -> str:
    return (
        f'<extensions><v:n xmlns:v="{VENDOR_NS}">'
        + "<v:n>" * (levels - 3)
        + "x"
        + "</v:n>" * (levels - 3)
        + "</v:n></extensions>"
    )


async def play(name: str, item: Any, rec: Any) -> tuple[Response, str] | None:
    """The scripted answer `name` to the report post `item`; None: answer normally."""
    if name == "accept":
        return None
    rep = item.obj
    rid, aid = rep.report_id, rep.agent_id
    base = rec.base_url
    if name == "wrong-id":
        return _xml(_receipt(str(uuid.uuid4()), aid)), name
    if name == "other-agent":
        return _xml(_receipt(rid, str(uuid.uuid4()))), name
    if name in ("duplicate", "extended", "prefixed"):
        rec.stored[rid] = item.digest
        if name == "duplicate":
            return _xml(_receipt(rid, aid, "duplicate")), name
        if name == "extended":
            ext = f'<extensions><v:note xmlns:v="{VENDOR_NS}">ignore me</v:note></extensions>'
            return _xml(_receipt(rid, aid, inner=ext)), name
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!-- a receipt, written differently -->\n'
            '<ms:Receipt xmlns:ms="urn:metersync:v1" version="1.0">\n'
            f"  <ms:messageId>{rid}</ms:messageId>\n  <!-- for your agent -->\n"
            f"  <ms:agentId>{aid}</ms:agentId>\n  <ms:status>accepted</ms:status>\n"
            f"  <ms:receivedAt>{xml_time(now())}</ms:receivedAt>\n"
            "  <ms:devicesStored>1</ms:devicesStored>\n</ms:Receipt>\n"
        ).encode()
        return _xml(body), name
    if name == "refused":
        return _xml(_error(1008, "SCHEMA_VIOLATION", rid), 400), name
    if name == "vendor-refused":
        return _xml(_error(9002, "ACME_REPORT_UNWANTED", rid), 400), name
    if name == "vendor-busy":
        return _xml(_error(9001, "ACME_BUSY", rid), 503), name
    if name == "reserved-busy":
        return _xml(_error(7001, "FUTURE_BUSY", rid), 503), name
    if name == "redirect":
        return Response("", status=307, headers={"Location": base + ELSEWHERE}), name
    if name == "doctype":
        host = base.split("/")[2]
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE Receipt [<!ENTITY id SYSTEM '
            f'"http://{host}{XXE_PATH}">]>\n'
        ).encode() + _receipt(rid, aid).split(b"\n", 1)[1].replace(
            b"<devicesStored>0", b"<devicesStored>&id;"
        )
        return _xml(body), name
    if name == "garbage":
        return _xml(_receipt(rid, aid)[:-12]), name  # cut inside the closing tags
    if name == "invalid":
        return _xml(_receipt(rid, aid, received=False)), name  # receivedAt is required
    if name == "wrong-root":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<AgentStatus xmlns="urn:metersync:v1" version="1.0" agentId="{aid}"/>'
        ).encode()
        return _xml(body), name
    if name == "v2":
        return _xml(_receipt(rid, aid, ns="urn:metersync:v2")), name
    if name == "deep":
        return _xml(_receipt(rid, aid, inner=_deep(40))), name
    if name == "slow":
        await asyncio.sleep(HOLD_SECONDS)
        rec.stored[rid] = item.digest
        return _xml(_receipt(rid, aid)), name
    raise ValueError(f"unknown scripted answer {name!r}")
