"""Checks of a manager under test: the harness plays agents over the HTTP(S) binding.

Every check is named after what it verifies and registered with the requirement ids it proves
(MS-DEL-2, MS-SEC-12…). The manager is a black box at a URL; enrollment tokens come from the
vendor's own token command (`--token-command`), run once per simulated agent.
"""

from __future__ import annotations

import asyncio
import copy
import re
import subprocess
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

import metersync_spec
from metersync import xml_edge
from metersync.errors import BY_CODE
from metersync_conformance.manager import pacing
from metersync_conformance.registry import (
    Finding,
    PeerError,
    Status,
    check,
    excerpt_of,
    fail,
    not_tested,
    ok,
)
from metersync_conformance.wire import (
    CONTENT_TYPE,
    ENROLL_PATH,
    EXAMPLE_AGENT_ID,
    REPORTS_PATH,
    Answer,
    SimAgent,
    expected_status,
    now,
    post,
    read_answer,
)

CORE = ("Manager-Core",)
HTTP = ("Manager-HTTP",)
TOKEN_BATCH = 8
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{16,128}")


class HarnessError(PeerError):
    """The manager did not give what a check needs (a token, an enrollment): a FAIL."""


@dataclass
class ManagerContext:
    url: str
    token_command: str
    api_token_command: str | None = None  # prints an operator token for /api/v1 (MS-HTTP-18)
    openapi: Path | None = None
    openapi_examples: int = 5
    smtp: str | None = None  # HOST:PORT of the manager's SMTP server (Manager-SMTP)
    channel_command: str | None = None  # makes the manager send GET {path} to {agent_id}
    revoke_command: str | None = None  # "CMD {agent_id}": revokes an agent (MS-SEC-9)
    reenroll_command: str | None = None  # "CMD {agent_id}": a re-enrollment token (MS-SEC-8)
    cacert: Path | None = None  # trust this CA for an https URL instead of the system store
    rate_probe: int = 1000  # requests sent at most to find a rate limit (MS-LIM-5)
    update_command: str | None = None  # Manager-Update: "CMD {feed_url} {trusted_root} …"
    update_platform: str = "any"  # the platform string of software targets it installs
    update: Any = None  # update_harness.UpdateRun, once the update steps ran
    manager_command: str | None = None  # Manager-Update: starts the manager in {mode}
    modes: Any = None  # update_harness.ModeRun per mode, once they ran
    modes_error: str | None = None  # why the manager could not be run in its modes
    update_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    client: httpx.AsyncClient = field(init=False)
    answers: list[tuple[str, bytes, Answer]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every token the harness used
    _token_pool: list[str] = field(default_factory=list)
    _token_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _main: SimAgent | None = None
    _api_token: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        # The agents' client: paced, Retry-After honoured, spread over loopback (pacing.py).
        self._pacer = pacing.AgentTransport(self._transport, spread=pacing.loopback(self.url))
        self.client = httpx.AsyncClient(timeout=60.0, transport=self._pacer)

    def _transport(self, **options: object) -> httpx.AsyncHTTPTransport:
        verify: object = str(self.cacert) if self.cacert else True
        # Idle connections are dropped after 1 s, well before a server's keep-alive timeout
        # (Hypercorn: 5 s): reusing one the server is closing at that moment is a ReadError.
        limits = httpx.Limits(max_keepalive_connections=20, keepalive_expiry=1.0)
        return httpx.AsyncHTTPTransport(verify=verify, limits=limits, **options)  # type: ignore[arg-type]

    def new_client(self, **transport: object) -> httpx.AsyncClient:
        """A client of its own (`local_address=`…): not paced, no retry, one address."""
        return httpx.AsyncClient(timeout=60.0, transport=self._transport(**transport))

    def raw_client(self) -> httpx.AsyncClient:
        """For the checks of the limits themselves: unpaced, from a loopback address no other
        check uses (when the manager is on loopback), so its blocks bite nobody else."""
        if pacing.loopback(self.url):
            return self.new_client(local_address=pacing.raw_address())
        return self.new_client()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def api_headers(self) -> dict[str, str]:
        """The operator's Authorization header for /api/v1 (MS-HTTP-18), from the vendor's
        command, made once; none without a command."""
        if self.api_token_command is None:
            return {}
        if self._api_token is None:
            out = await self.run_command(self.api_token_command, "operator token command")
            words = out.split()
            if not words:
                raise HarnessError("the operator token command printed nothing")
            self._api_token = words[-1]
        return {"Authorization": f"Bearer {self._api_token}"}

    async def get_json(self, path: str, **params: object) -> tuple[int, object]:
        """GET a read-API path (MS-HTTP-17): (status, JSON or None)."""
        resp = await self.client.get(
            self.url.rstrip("/") + path, params=params or None, headers=await self.api_headers()
        )
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    async def run_command(self, command: str, what: str) -> str:
        proc = await asyncio.to_thread(
            subprocess.run, command, shell=True, capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise HarnessError(
                f"{what} {command!r} exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
            )
        return proc.stdout

    async def token(self, command: str | None = None) -> str:
        """A fresh enrollment token from the vendor's command (its last token-shaped word).

        Plain tokens are made TOKEN_BATCH at a time, concurrently (a command may take a
        second to start); the unused rest of the last batch simply expires."""
        if command is not None:
            return await self._one_token(command)
        async with self._token_lock:
            if not self._token_pool:
                self._token_pool = list(
                    await asyncio.gather(
                        *(self._one_token(self.token_command) for _ in range(TOKEN_BATCH))
                    )
                )
            return self._token_pool.pop()

    async def _one_token(self, command: str) -> str:
        proc = await asyncio.to_thread(
            subprocess.run,
            command,
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise HarnessError(
                f"token command {command!r} exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
            )
        for line in reversed(proc.stdout.strip().splitlines()):
            words = [w for w in re.split(r"[\s\"':=,]+", line) if _TOKEN.fullmatch(w)]
            if words:
                self.tokens.append(words[-1])
                return words[-1]
        raise HarnessError(f"token command printed no token: {proc.stdout.strip()[-200:]!r}")

    def _log(self, what: str, sent: bytes, ans: Answer) -> Answer:
        self.answers.append((what, sent, ans))
        return ans

    async def enroll(
        self, agent: SimAgent, token: str | None = None, client: httpx.AsyncClient | None = None
    ) -> Answer:
        token = token or await self.token()
        body = agent.enrollment(token)
        # Every Enrollment is signed with the key it encloses (MS-SEC-5, MS-SEC-10).
        sig = agent.sign(body)
        ans = await post(client or self.client, self.url, ENROLL_PATH, body, signature=sig)
        if ans.kind == "Receipt":
            agent.enrolled = True
        return self._log("enroll", body, ans)

    async def enrolled_agent(self) -> SimAgent:
        agent = SimAgent()
        ans = await self.enroll(agent)
        if not agent.enrolled:
            raise HarnessError(f"enrollment with a fresh token was refused: {ans.brief()}")
        return agent

    async def main_agent(self) -> SimAgent:
        """An enrolled agent shared by the checks that only need one, replaced by a fresh one
        once it spent half its budget of the last minute (MS-LIM-5): a check starting with it
        never waits for the pacing, and never spends a budget another check needs."""
        async with self._lock:
            main = self._main
            if main is None or self._pacer.recent(main.agent_id) >= pacing.PER_MINUTE // 2:
                self._main = main = await self.enrolled_agent()
            return main

    async def send(
        self,
        agent: SimAgent,
        body: bytes,
        *,
        signature: str | None | bool = True,
        what: str = "report",
        client: httpx.AsyncClient | None = None,
        **kw: object,
    ) -> Answer:
        sig = agent.sign(body) if signature is True else (signature or None)
        via = client or self.client
        ans = await post(via, self.url, REPORTS_PATH, body, signature=sig, **kw)  # type: ignore[arg-type]
        return self._log(what, body, ans)


# --- helpers -----------------------------------------------------------------------------


def evidence(sent: bytes, ans: Answer) -> str:
    return f"sent:\n{excerpt_of(sent, 400)}\n\nanswer ({ans.brief()}):\n{excerpt_of(ans.body, 400)}"


def expect_code(
    req: str, what: str, sent: bytes, ans: Answer, code: int, *, line: int | None = None
) -> Finding:
    """PASS when the answer is an Error with `code`; FAIL with the exchange otherwise."""
    name = BY_CODE[code].name if code in BY_CODE else "?"
    if ans.kind == "Error" and ans.code == code:
        extra = ""
        loc = ans.obj.location
        if line is not None and loc is not None and loc.line is not None and loc.line != line:
            extra = f" (location line {loc.line}, the problem is on line {line})"
        return ok(f"{what}: refused with {code} {name}{extra}", req)
    return fail(
        f"{what}: expected Error {code} {name}, got {ans.brief()}",
        req,
        expected=f"Error {code} {name} (HTTP {expected_status(code)})",
        actual=ans.brief(),
        excerpt=evidence(sent, ans),
    )


def expect_receipt(
    req: str, what: str, sent: bytes, ans: Answer, status: str, message_id: str | None = None
) -> Finding:
    if ans.kind == "Receipt" and ans.receipt_status == status:
        if message_id is not None and ans.obj.message_id != message_id:
            return fail(
                f"{what}: the receipt names message {ans.obj.message_id}",
                req,
                expected=f"Receipt for {message_id}",
                actual=f"Receipt for {ans.obj.message_id}",
                excerpt=evidence(sent, ans),
            )
        return ok(f"{what}: Receipt {status}", req)
    return fail(
        f"{what}: expected Receipt {status}, got {ans.brief()}",
        req,
        expected=f"Receipt {status}",
        actual=ans.brief(),
        excerpt=evidence(sent, ans),
    )


# --- enrollment --------------------------------------------------------------------------


@check("MS-SEC-1", classes=CORE, role="manager")
async def enrollment_with_fresh_token_accepted(ctx: ManagerContext) -> list[Finding]:
    """An Enrollment with a fresh token is answered with a Receipt accepted."""
    agent = SimAgent()
    token = await ctx.token()
    body = agent.enrollment(token)
    ans = await post(ctx.client, ctx.url, ENROLL_PATH, body, signature=agent.sign(body))
    ctx._log("enroll", body, ans)
    return [expect_receipt("MS-SEC-1", "enrollment with a fresh token", body, ans, "accepted")]


@check("MS-SEC-2", classes=CORE, role="manager")
async def enrollment_token_single_use(ctx: ManagerContext) -> list[Finding]:
    """A token spent by one agent is refused to another (2007); an unknown token gets 2006."""
    first = SimAgent()
    token = await ctx.token()
    ans1 = await ctx.enroll(first, token)
    if not first.enrolled:
        return [fail(f"the first enrollment with the token was refused: {ans1.brief()}")]
    second = SimAgent()
    body = second.enrollment(token)
    ans2 = await post(ctx.client, ctx.url, ENROLL_PATH, body, signature=second.sign(body))
    ctx._log("enroll", body, ans2)
    out = [expect_code("MS-SEC-2", "a token reused by a second agent", body, ans2, 2007)]
    third = SimAgent()
    body3 = third.enrollment("ZZZZ" + uuid.uuid4().hex)
    ans3 = await post(ctx.client, ctx.url, ENROLL_PATH, body3, signature=third.sign(body3))
    ctx._log("enroll", body3, ans3)
    out.append(expect_code("MS-SEC-2", "an unknown token", body3, ans3, 2006))
    return out


# --- delivery and idempotency ------------------------------------------------------------


@check("MS-MSG-6", "MS-DEL-2", classes=CORE, role="manager")
async def valid_report_accepted(ctx: ManagerContext) -> list[Finding]:
    """A valid, signed report is answered with a Receipt accepted naming its reportId."""
    agent = await ctx.main_agent()
    rid, body = agent.report()
    ans = await ctx.send(agent, body)
    out = [expect_receipt("MS-DEL-2", "a valid signed report", body, ans, "accepted", rid)]
    found = expect_receipt("MS-MSG-6", "a valid signed report", body, ans, "accepted", rid)
    if ans.kind == "Receipt" and found.status is Status.PASS:
        r = ans.obj
        if r.agent_id != agent.agent_id or r.devices_stored != 1 or r.received_at is None:
            found = fail(
                "the receipt's agentId, devicesStored or receivedAt is wrong",
                "MS-MSG-6",
                expected=f"agentId {agent.agent_id}, devicesStored 1, receivedAt",
                actual=f"agentId {r.agent_id}, devicesStored {r.devices_stored}",
                excerpt=evidence(body, ans),
            )
    return [*out, found]


@check("MS-DEL-2", classes=CORE, role="manager")
async def exact_duplicate_answered_duplicate(ctx: ManagerContext) -> list[Finding]:
    """The same report sent twice: accepted, then duplicate (nothing stored twice)."""
    agent = await ctx.main_agent()
    rid, body = agent.report()
    first = await ctx.send(agent, body)
    second = await ctx.send(agent, body)
    out = [
        expect_receipt("MS-DEL-2", "first delivery", body, first, "accepted", rid),
        expect_receipt("MS-DEL-2", "the same bytes again", body, second, "duplicate", rid),
    ]
    # The duplicate's receipt, field by field: this agent, nothing stored.
    r = second.obj if second.kind == "Receipt" else None
    if r is not None and (r.agent_id != agent.agent_id or r.devices_stored != 0):
        out.append(
            fail(
                "the duplicate's receipt claims a store or another agent",
                "MS-DEL-2",
                expected=f"agentId {agent.agent_id}, devicesStored 0",
                actual=f"agentId {r.agent_id}, devicesStored {r.devices_stored}",
                excerpt=evidence(body, second),
            )
        )
    return out


@check("MS-DEL-2", classes=CORE, role="manager")
async def concurrent_duplicates_one_accepted(ctx: ManagerContext) -> list[Finding]:
    """20 copies of one report at once: every answer a receipt, exactly one accepted."""
    agent = await ctx.main_agent()
    rid, body = agent.report()
    sig = agent.sign(body)
    answers = await asyncio.gather(*(ctx.send(agent, body, signature=sig) for _ in range(20)))
    tally: dict[str, int] = {}
    for a in answers:
        key = a.receipt_status or a.brief()
        tally[key] = tally.get(key, 0) + 1
    accepted = tally.get("accepted", 0)
    receipts = accepted + tally.get("duplicate", 0)
    if accepted == 1 and receipts == 20:
        return [ok("20 concurrent copies: 1 accepted, 19 duplicate")]
    return [
        fail(
            f"20 concurrent copies of report {rid}: {tally}",
            expected="{'accepted': 1, 'duplicate': 19}",
            actual=str(tally),
            excerpt=evidence(body, next(a for a in answers if a.receipt_status != "duplicate")),
        )
    ]


@check("MS-DEL-4", "MS-SEC-16", classes=CORE, role="manager")
async def same_id_different_bytes_refused(ctx: ManagerContext) -> list[Finding]:
    """A stored reportId sent again with other content is refused with 2005."""
    agent = await ctx.main_agent()
    rid, body = agent.report(total=1000)
    first = await ctx.send(agent, body)
    if first.receipt_status != "accepted":
        return [fail(f"the original report was not accepted: {first.brief()}")]
    _, other = agent.report(report_id=rid, total=1001)
    ans = await ctx.send(agent, other)
    return [
        expect_code(req, "same reportId, different bytes", other, ans, 2005)
        for req in ("MS-DEL-4", "MS-SEC-16")
    ]


@check("MS-DEL-5", classes=CORE, role="manager")
async def out_of_order_sequences_accepted(ctx: ManagerContext) -> list[Finding]:
    """Reports arriving out of sequence order (5, 3, 4) are all accepted."""
    agent = await ctx.enrolled_agent()
    out = []
    for seq in (5, 3, 4):
        rid, body = agent.report(sequence=seq)
        ans = await ctx.send(agent, body)
        out.append(expect_receipt("MS-DEL-5", f"sequence {seq}", body, ans, "accepted", rid))
    return out


# --- the XML edge ------------------------------------------------------------------------


def invalid_examples(directory: Path | None = None) -> list[tuple[str, bytes, dict[str, object]]]:
    d = directory or (metersync_spec.EXAMPLES_DIR / "invalid")
    table = tomllib.loads((d / "expected.toml").read_text(encoding="utf-8"))
    return [(name, (d / name).read_bytes(), exp) for name, exp in sorted(table.items())]


@check(
    "MS-XML-2",
    "MS-XML-3",
    "MS-XML-4",
    "MS-XML-5",
    "MS-XML-6",
    "MS-VER-2",
    classes=CORE,
    role="manager",
    timeout=120,
)
async def invalid_examples_refused(ctx: ManagerContext) -> list[Finding]:
    """Every invalid example of the spec, signed by an enrolled agent, gets its stated code."""
    agent = await ctx.main_agent()
    out = []
    for name, raw, exp in invalid_examples():
        code = int(exp["code"])  # type: ignore[call-overload]
        req = BY_CODE[code].requirement
        # The example's agent becomes ours, in place, so lines and columns stay the same.
        body = raw.replace(EXAMPLE_AGENT_ID.encode(), agent.agent_id.encode())
        ans = await ctx.send(agent, body, what=f"invalid example {name}")
        line = exp.get("line")
        out.append(expect_code(req, name, body, ans, code, line=line))  # type: ignore[arg-type]
    return out


def _with_prolog(body: bytes, prolog: bytes) -> bytes:
    decl, _, rest = body.partition(b"\n")
    return decl + b"\n" + prolog + b"\n" + rest


@check("MS-XML-4", "MS-XML-8", classes=CORE, role="manager")
async def hostile_xml_refused(ctx: ManagerContext) -> list[Finding]:
    """DOCTYPE, XXE, entity bombs and processing instructions, validly signed: 1002 each."""
    agent = await ctx.main_agent()
    _, base = agent.report()
    variants: dict[str, bytes] = {
        "a plain DOCTYPE": _with_prolog(base, b"<!DOCTYPE Report>"),
        "an external entity (XXE)": _with_prolog(
            base, b'<!DOCTYPE Report [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
        ).replace(b"<sysName>NPI1A2B3C</sysName>", b"<sysName>&xxe;</sysName>"),
        "a billion-laughs entity bomb": _with_prolog(
            base,
            b'<!DOCTYPE Report [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>',
        ).replace(b"<sysName>NPI1A2B3C</sysName>", b"<sysName>&c;</sysName>"),
        "a processing instruction": _with_prolog(
            base, b'<?xml-stylesheet type="text/xsl" href="http://127.0.0.1:9/x.xsl"?>'
        ),
    }
    out = []
    for what, body in variants.items():
        ans = await ctx.send(agent, body, what=what)
        out.append(expect_code("MS-XML-4", what, body, ans, 1002))
        if "entity" in what:  # entities refused, never expanded nor fetched
            out.append(expect_code("MS-XML-8", what, body, ans, 1002))
    return out


@check("MS-LIM-2", classes=CORE, role="manager")
async def too_deep_refused(ctx: ManagerContext) -> list[Finding]:
    """Both sides of the depth limit: a signed report nesting 33 levels (and 40) is refused with
    1004; one nesting exactly 32 is accepted."""
    agent = await ctx.main_agent()
    out: list[Finding] = []
    for levels in (xml_edge.MAX_DEPTH, xml_edge.MAX_DEPTH + 1, xml_edge.MAX_DEPTH + 8):
        rid, base = agent.report()
        depth = levels - 2  # under Report and extensions
        nest = (b'<x:e xmlns:x="urn:example:deep">' * depth) + (b"</x:e>" * depth)
        body = base.replace(b"</Report>", b"<extensions>" + nest + b"</extensions></Report>")
        ans = await ctx.send(agent, body, what=f"{levels} levels deep")
        what = f"elements nested {levels} deep"
        if levels <= xml_edge.MAX_DEPTH:
            out.append(expect_receipt("MS-LIM-2", what, body, ans, "accepted", rid))
        else:
            out.append(expect_code("MS-LIM-2", what, body, ans, 1004))
    return out


# --- signatures and identity -------------------------------------------------------------


@check("MS-SEC-10", classes=CORE, role="manager")
async def missing_signature_refused(ctx: ManagerContext) -> list[Finding]:
    """A report without a signature is refused with 2001."""
    agent = await ctx.main_agent()
    _, body = agent.report()
    ans = await ctx.send(agent, body, signature=None)
    out = [expect_code("MS-SEC-10", "an unsigned report", body, ans, 2001)]
    # The faults of Table 8-4 that are 2001, each over a fresh report.
    for what, bad in SIGNATURE_FAULTS:
        _, body2 = agent.report()
        ans2 = await ctx.send(agent, body2, signature=bad(agent.sign(body2)))
        out.append(expect_code("MS-SEC-10", what, body2, ans2, 2001))
    # Two header fields are one field with the values joined (RFC 9110 section 5.3): the
    # parameters repeat, 2001 (MS-SEC-19), even when both fields are the valid signature.
    _, body3 = agent.report()
    sig = agent.sign(body3)
    headers = [("Content-Type", CONTENT_TYPE), ("MeterSync-Signature", sig)]
    headers.append(("MeterSync-Signature", sig))
    resp = await ctx.client.post(ctx.url.rstrip("/") + REPORTS_PATH, content=body3, headers=headers)
    ans3 = ctx._log("two signature header fields", body3, read_answer(resp))
    out.append(expect_code("MS-SEC-10", "two MeterSync-Signature fields", body3, ans3, 2001))
    return out


def _drop(param: str) -> Any:
    return lambda sig: ", ".join(p for p in sig.split(", ") if not p.startswith(param + "="))


SIGNATURE_FAULTS = (  # spec Table 8-4, the rows refused with 2001
    ("a signature header without alg", _drop("alg")),
    ("a signature header without agent", _drop("agent")),
    ("a sig that is not base64", lambda sig: re.sub(r'sig="[^"]*"', 'sig="not*base64!"', sig)),
    ("a signature header that is no parameter list", lambda sig: "ed25519 " + sig),
)


@check("MS-SEC-11", classes=CORE, role="manager")
async def unknown_agent_refused(ctx: ManagerContext) -> list[Finding]:
    """A report signed by an agent that never enrolled is refused with 2002."""
    stranger = SimAgent()
    _, body = stranger.report()
    ans = await ctx.send(stranger, body)
    return [expect_code("MS-SEC-11", "a report from an agent never enrolled", body, ans, 2002)]


@check("MS-SEC-12", classes=CORE, role="manager")
async def forged_signature_refused(ctx: ManagerContext) -> list[Finding]:
    """A report in an enrolled agent's name, signed with another key, is refused with 2003."""
    agent = await ctx.main_agent()
    forger = SimAgent(agent_id=agent.agent_id)  # same id, a key the manager never saw
    _, body = agent.report()
    ans = await ctx.send(agent, body, signature=forger.sign(body))
    out = [expect_code("MS-SEC-12", "a signature by a foreign key", body, ans, 2003)]
    # The right key over other bytes: a body changed after signing.
    _, original = agent.report()
    sig = agent.sign(original)
    tampered = original.replace(b"<queueDepth>0</queueDepth>", b"<queueDepth>1</queueDepth>")
    ans2 = await ctx.send(agent, tampered, signature=sig)
    out.append(expect_code("MS-SEC-12", "a body changed after signing", tampered, ans2, 2003))
    # An accepted signature again, over another report's bytes.
    _, accepted = agent.report()
    used = agent.sign(accepted)
    await ctx.send(agent, accepted, signature=used)
    _, other = agent.report()
    ans3 = await ctx.send(agent, other, signature=used)
    what = "an accepted report's signature over another report"
    out.append(expect_code("MS-SEC-12", what, other, ans3, 2003))
    # The right signature, declared with another algorithm.
    _, body4 = agent.report()
    other_alg = agent.sign(body4).replace('alg="ed25519"', 'alg="rsa-sha256"')
    ans4 = await ctx.send(agent, body4, signature=other_alg)
    out.append(expect_code("MS-SEC-12", 'alg="rsa-sha256"', body4, ans4, 2003))
    # Table 8-4: a sig of base64 that decodes to other than 64 bytes is 2003.
    _, body5 = agent.report()
    short = re.sub(r'sig="[^"]*"', 'sig="' + "A" * 84 + '"', agent.sign(body5))  # 63 bytes
    ans5 = await ctx.send(agent, body5, signature=short)
    out.append(expect_code("MS-SEC-12", "a sig of 63 bytes", body5, ans5, 2003))
    return out


@check("MS-SEC-13", classes=CORE, role="manager")
async def agent_id_mismatch_refused(ctx: ManagerContext) -> list[Finding]:
    """A report, and an Enrollment, whose agentId is not its signer are refused with 2009."""
    agent = await ctx.main_agent()
    _, body = agent.report(agent_id=str(uuid.uuid4()))
    ans = await ctx.send(agent, body)
    out = [expect_code("MS-SEC-13", "a report's agentId differs from the signer", body, ans, 2009)]
    newcomer = SimAgent()
    enrollment = newcomer.enrollment(await ctx.token())
    sig = newcomer.sign(enrollment, agent_id=str(uuid.uuid4()))  # the right key, another name
    ans2 = await post(ctx.client, ctx.url, ENROLL_PATH, enrollment, signature=sig)
    ctx._log("enrollment signed in another agent's name", enrollment, ans2)
    what = "an Enrollment signed in another agentId's name"
    out.append(expect_code("MS-SEC-13", what, enrollment, ans2, 2009))
    return out


@check("MS-SEC-15", classes=CORE, role="manager")
async def clock_skew_refused(ctx: ManagerContext) -> list[Finding]:
    """Both sides of the 300 s window, for reports and Enrollments: 290 s ahead is accepted,
    320 s (and a day) ahead refused with 2004; a report three days old is accepted."""
    agent = await ctx.main_agent()
    out: list[Finding] = []
    for secs in (320, 86400):
        _, ahead = agent.report(created_at=now() + timedelta(seconds=secs))
        ans = await ctx.send(agent, ahead)
        out.append(expect_code("MS-SEC-15", f"createdAt {secs} s ahead", ahead, ans, 2004))
    rid0, near = agent.report(created_at=now() + timedelta(seconds=290))
    ans0 = await ctx.send(agent, near)
    out.append(expect_receipt("MS-SEC-15", "createdAt 290 s ahead", near, ans0, "accepted", rid0))
    for secs, want in ((320, 2004), (-320, 2004), (290, None)):
        newcomer = SimAgent()
        token = await ctx.token()
        body = newcomer.enrollment(token, created_at=now() + timedelta(seconds=secs))
        ans_e = await post(ctx.client, ctx.url, ENROLL_PATH, body, signature=newcomer.sign(body))
        ctx._log(f"enrollment created {secs} s off", body, ans_e)
        what = f"an Enrollment whose createdAt is {secs} s off"
        if want is None:
            out.append(expect_receipt("MS-SEC-15", what, body, ans_e, "accepted", None))
        else:
            out.append(expect_code("MS-SEC-15", what, body, ans_e, want))
    rid, old = agent.report(created_at=now() - timedelta(days=3))
    ans2 = await ctx.send(agent, old)
    out.append(
        expect_receipt(
            "MS-SEC-15",
            "createdAt three days ago (a late outbox delivery)",
            old,
            ans2,
            "accepted",
            rid,
        )
    )
    return out


# --- the HTTP binding --------------------------------------------------------------------


@check("MS-LIM-1", classes=CORE, role="manager", timeout=120)
async def oversize_refused(ctx: ManagerContext) -> list[Finding]:
    """A signed document one byte over 16 MiB is refused with 1003."""
    agent = await ctx.main_agent()
    _, base = agent.report()
    pad = xml_edge.MAX_BYTES + 1 - len(base)
    body = base.replace(b"</Report>", b"<!--" + b"x" * (pad - 7) + b"--></Report>")
    assert len(body) == xml_edge.MAX_BYTES + 1, len(body)
    try:
        ans = await ctx.send(agent, body, what="oversize")
    except httpx.TransportError as exc:
        return [
            fail(
                f"the connection failed without an answer: {exc!r}",
                expected="Error 1003 DOCUMENT_TOO_LARGE",
                actual=repr(exc),
            )
        ]
    out = [expect_code("MS-LIM-1", f"a document of {len(body)} bytes", body[:2000], ans, 1003)]
    # The same bytes gzip-compressed: the limit is on the document, not on the transfer.
    ans2 = await ctx.send(agent, body, what="oversize, gzip", gzipped=True)
    what = f"a document of {len(body)} bytes sent gzip-compressed"
    out.append(expect_code("MS-LIM-1", what, body[:2000], ans2, 1003))
    return out


@check("MS-HTTP-4", classes=HTTP, role="manager")
async def wrong_content_type_refused(ctx: ManagerContext) -> list[Finding]:
    """A report sent as text/plain is refused with 1005; application/xml is accepted."""
    agent = await ctx.main_agent()
    _, body = agent.report()
    ans = await ctx.send(agent, body, content_type="text/plain")
    out = [expect_code("MS-HTTP-4", "Content-Type text/plain", body, ans, 1005)]
    rid, body2 = agent.report()
    ans2 = await ctx.send(agent, body2, content_type="application/xml")
    out.append(
        expect_receipt("MS-HTTP-4", "Content-Type application/xml", body2, ans2, "accepted", rid)
    )
    # Every media type parameter is ignored, a charset too: the XML pipeline judges the
    # encoding of the (UTF-8) document, not the header.
    rid3, body3 = agent.report()
    labelled = CONTENT_TYPE + "; charset=iso-8859-1"
    ans3 = await ctx.send(agent, body3, content_type=labelled)
    out.append(
        expect_receipt("MS-HTTP-4", f"Content-Type {labelled}", body3, ans3, "accepted", rid3)
    )
    return out


@check("MS-HTTP-19", classes=HTTP, role="manager")
async def wrong_path_or_method_is_an_error_document(ctx: ManagerContext) -> list[Finding]:
    """A path under /v1/ that Table 8-1 does not list is 404 with 5002; GET on /v1/reports and
    PUT on /v1/enroll are 405 with Allow and 5001; every answer an Error document."""
    base = ctx.url.rstrip("/")
    out: list[Finding] = []
    for method, path, code in (
        ("POST", "/v1/report", 5002),
        ("POST", "/v1/reports/extra", 5002),
        ("GET", REPORTS_PATH, 5001),
        ("PUT", ENROLL_PATH, 5001),
    ):
        resp = await ctx.client.request(method, base + path, headers={"Content-Type": CONTENT_TYPE})
        ans = ctx._log(f"{method} {path}", b"", read_answer(resp))
        what = f"{method} {path}"
        out.append(expect_code("MS-HTTP-19", what, b"", ans, code))
        if code == 5001 and "allow" not in ans.headers:
            out.append(fail(f"{what}: 405 without an Allow header", "MS-HTTP-19",
                            expected="Allow: POST", actual=ans.brief()))  # fmt: skip
    return out


@check("MS-HTTP-6", classes=HTTP, role="manager")
async def content_encoding(ctx: ManagerContext) -> list[Finding]:
    """A gzip-encoded report is accepted; an unknown Content-Encoding is refused with 1010."""
    agent = await ctx.main_agent()
    rid, body = agent.report()
    ans = await ctx.send(agent, body, gzipped=True)
    out = [expect_receipt("MS-HTTP-6", "Content-Encoding gzip", body, ans, "accepted", rid)]
    _, body2 = agent.report()
    ans2 = await ctx.send(agent, body2, extra={"Content-Encoding": "x-unknown"})
    out.append(expect_code("MS-HTTP-6", "Content-Encoding x-unknown", body2, ans2, 1010))
    return out


@check("MS-ERR-1", "MS-ERR-2", "MS-HTTP-3", "MS-HTTP-5", classes=CORE + HTTP, role="manager")
async def every_answer_is_a_metersync_document(ctx: ManagerContext) -> list[Finding]:
    """Every answer the manager gave so far is a valid Receipt or Error with the right status."""
    if not ctx.answers:
        agent = await ctx.main_agent()
        _, body = agent.report()
        await ctx.send(agent, body, signature=None)
    out: list[Finding] = []
    bad_doc = [(w, s, a) for w, s, a in ctx.answers if a.kind is None]
    if bad_doc:
        w, s, a = bad_doc[0]
        out.append(
            fail(
                f"{len(bad_doc)} answers were not valid Receipt/Error documents "
                f"(first: {w}: {a.problem})",
                "MS-ERR-1",
                excerpt=evidence(s, a),
            )
        )
    else:
        out.append(
            ok(f"all {len(ctx.answers)} answers were valid Receipt or Error documents", "MS-ERR-1")
        )
    wrong_status = []
    wrong_type = []
    for w, s, a in ctx.answers:
        want = 200 if a.kind == "Receipt" else None
        if a.kind == "Error":
            want = expected_status(a.code)
        if want is not None and a.status != want:
            wrong_status.append((w, s, a, want))
        ctype = a.headers.get("content-type", "").split(";")[0].strip()
        if a.kind is not None and ctype != CONTENT_TYPE:
            wrong_type.append((w, s, a, ctype))
    for req in ("MS-HTTP-5", "MS-ERR-2"):
        if wrong_status:
            w, s, a, want = wrong_status[0]
            out.append(
                fail(
                    f"{len(wrong_status)} answers had an HTTP status other than their code's "
                    f"(first: {w}: {a.brief()})",
                    req,
                    expected=f"HTTP {want}",
                    actual=f"HTTP {a.status}",
                    excerpt=evidence(s, a),
                )
            )
        else:
            out.append(ok(f"all {len(ctx.answers)} answers had their code's HTTP status", req))
    if wrong_type:
        w, s, a, ctype = wrong_type[0]
        out.append(
            fail(
                f"{len(wrong_type)} answers were not labelled {CONTENT_TYPE} (first: {w})",
                "MS-HTTP-3",
                expected=CONTENT_TYPE,
                actual=ctype or "no Content-Type",
                excerpt=evidence(s, a),
            )
        )
    else:
        out.append(ok(f"all {len(ctx.answers)} answers labelled {CONTENT_TYPE}", "MS-HTTP-3"))
    return out


# --- the read API ------------------------------------------------------------------------


@check("MS-HTTP-17", classes=HTTP, role="manager", timeout=300)
async def read_api_matches_openapi(ctx: ManagerContext) -> list[Finding]:
    """The JSON read API answers as spec/openapi/manager.yaml says (schemathesis, bounded)."""
    from metersync_conformance.manager import openapi_probe

    # The spec's document is the contract; --openapi may name a vendor's superset of it.
    source: str | Path = ctx.openapi or (metersync_spec.OPENAPI_DIR / "manager.yaml")
    verify = str(ctx.cacert) if ctx.cacert else True
    headers = await ctx.api_headers()
    problems, ran = await asyncio.to_thread(
        openapi_probe.run, source, ctx.url, ctx.openapi_examples, headers, verify
    )
    if not ran:
        return [not_tested(f"no GET operation with a JSON answer in {source}")]
    if problems:
        first = problems[0]
        return [
            fail(
                f"{len(problems)} of {ran} read operations broke the OpenAPI document; "
                f"first: {first}",
                expected="answers as documented",
                actual=first,
            )
        ]
    return [ok(f"{ran} read operations answered as documented (schemathesis)")]


@check("MS-HTTP-18", classes=HTTP, role="manager")
async def operator_api_needs_a_token(ctx: ManagerContext) -> list[Finding]:
    """/api/v1 answers 401 + WWW-Authenticate: Bearer without a valid operator token (none, an
    unknown one, an enrollment token), and 200 with the operator's token."""
    if ctx.api_token_command is None:
        return [not_tested("no --api-token-command: the harness has no operator token")]
    base = ctx.url.rstrip("/")
    tries = {
        "no Authorization header": {},
        "an unknown bearer token": {"Authorization": f"Bearer {uuid.uuid4().hex}"},
        "an enrollment token": {"Authorization": f"Bearer {await ctx.token()}"},
    }
    out: list[Finding] = []
    for path in ("/api/v1/devices", "/api/v1/agents", "/api/v1/channels"):
        for what, headers in tries.items():
            resp = await ctx.client.get(base + path, headers=headers)
            challenge = resp.headers.get("WWW-Authenticate", "")
            if resp.status_code != 401 or not challenge.lower().startswith("bearer"):
                out.append(
                    fail(
                        f"GET {path} with {what} answered HTTP {resp.status_code}",
                        expected="401 with WWW-Authenticate: Bearer",
                        actual=f"{resp.status_code}, WWW-Authenticate: {challenge or 'absent'}",
                        excerpt=f"sent:\nGET {path} with {what}\n\nanswer (HTTP "
                        f"{resp.status_code}):\n{excerpt_of(resp.text, 400)}",
                    )
                )
    resp = await ctx.client.get(base + "/api/v1/devices", headers=await ctx.api_headers())
    if resp.status_code != 200:
        out.append(
            fail(
                f"GET /api/v1/devices with the operator token answered {resp.status_code}",
                expected="200",
                actual=str(resp.status_code),
                excerpt=resp.text,
            )
        )
    return out or [ok("every /api/v1 request without a valid operator token got 401 + Bearer")]


# --- tolerant receiver, message types, processing order ----------------------------------


@check("MS-MSG-16", "MS-HTTP-2", classes=CORE + HTTP, role="manager")
async def other_messages_refused_on_ingest(ctx: ManagerContext) -> list[Finding]:
    """A Receipt or an Enrollment posted as a report, a Report as an enrollment: 1007."""
    agent = await ctx.main_agent()
    receipt = (metersync_spec.EXAMPLES_DIR / "valid" / "receipt.xml").read_bytes()
    receipt = receipt.replace(EXAMPLE_AGENT_ID.encode(), agent.agent_id.encode())
    out = []
    ans = await ctx.send(agent, receipt, what="a Receipt posted to /v1/reports")
    out.append(expect_code("MS-MSG-16", "a Receipt posted to /v1/reports", receipt, ans, 1007))
    enrollment = agent.enrollment("Q" * 32)
    ans2 = await ctx.send(agent, enrollment, what="an Enrollment posted to /v1/reports")
    out.append(expect_code("MS-HTTP-2", "an Enrollment posted to /v1/reports", enrollment, ans2,
                           1007))  # fmt: skip
    _, report = agent.report()
    ans3 = await post(ctx.client, ctx.url, ENROLL_PATH, report, signature=agent.sign(report))
    ctx._log("a Report posted to /v1/enroll", report, ans3)
    out.append(expect_code("MS-HTTP-2", "a Report posted to /v1/enroll", report, ans3, 1007))
    return out


@check("MS-VER-4", "MS-VER-6", "MS-XML-10", classes=CORE, role="manager")
async def tolerant_receiver(ctx: ManagerContext) -> list[Finding]:
    """Foreign extensions, a later minor version and another namespace prefix are accepted."""
    agent = await ctx.main_agent()
    out = []
    rid, base = agent.report()
    ext = base.replace(
        b"</Report>",
        b'<extensions><v:note xmlns:v="urn:example:vendor">x</v:note></extensions></Report>',
    )
    ans = await ctx.send(agent, ext, what="vendor extension")
    out.append(expect_receipt("MS-VER-4", "an unknown vendor extension", ext, ans, "accepted", rid))
    rid2, base2 = agent.report()
    minor = base2.replace(b'version="1.0"', b'version="1.7"', 1)
    ans2 = await ctx.send(agent, minor, what="minor version 1.7")
    out.append(expect_receipt("MS-VER-6", 'version="1.7"', minor, ans2, "accepted", rid2))
    rid3, base3 = agent.report()
    prefixed = re.sub(rb"<(/?)(?=[A-Za-z])", rb"<\1ms:", base3).replace(
        b'xmlns="urn:metersync:v1"', b'xmlns:ms="urn:metersync:v1"'
    )
    ans3 = await ctx.send(agent, prefixed, what="ms: prefix")
    out.append(expect_receipt("MS-XML-10", "elements with an ms: prefix", prefixed, ans3,
                              "accepted", rid3))  # fmt: skip
    return out


@check("MS-MSG-3", classes=CORE, role="manager")
async def time_without_zone_refused(ctx: ManagerContext) -> list[Finding]:
    """A date-time without a time zone is refused with 3001."""
    agent = await ctx.main_agent()
    _, body = agent.report()
    body = re.sub(rb"<createdAt>([^<]*?)Z</createdAt>", rb"<createdAt>\1</createdAt>", body)
    ans = await ctx.send(agent, body, what="createdAt without a time zone")
    return [expect_code("MS-MSG-3", "createdAt without a time zone", body, ans, 3001)]


@check("MS-MSG-18", classes=CORE, role="manager")
async def device_key_twice_refused(ctx: ManagerContext) -> list[Finding]:
    """A report holding two snapshots of one device key is refused with 3001."""
    agent = await ctx.main_agent()
    _, body = agent.report(mutate=lambda rep: rep.device.append(copy.deepcopy(rep.device[0])))
    ans = await ctx.send(agent, body, what="one device key twice")
    return [expect_code("MS-MSG-18", "one device key in two snapshots", body, ans, 3001)]


@check("MS-DEL-23", classes=CORE, role="manager")
async def sequence_at_its_bound_accepted(ctx: ManagerContext) -> list[Finding]:
    """A report of sequence 2^63-1, the largest an agent may send, is accepted."""
    agent = await ctx.main_agent()
    rid, body = agent.report(sequence=2**63 - 1)
    ans = await ctx.send(agent, body, what="sequence 2^63-1")
    return [expect_receipt("MS-DEL-23", "sequence 2^63-1", body, ans, "accepted", rid)]


@check("MS-MSG-17", classes=CORE, role="manager")
async def counter_at_the_top_of_unsigned_long(ctx: ManagerContext) -> list[Finding]:
    """A counter of 2^64-1 (a valid Counter64) is accepted like any other value."""
    agent = await ctx.main_agent()
    rid, body = agent.report(total=2**64 - 1)
    ans = await ctx.send(agent, body, what="a counter of 2^64-1")
    return [expect_receipt("MS-MSG-17", "a counter of 2^64-1", body, ans, "accepted", rid)]


@check("MS-SEC-19", classes=CORE, role="manager")
async def repeated_signature_parameter_refused(ctx: ManagerContext) -> list[Finding]:
    """A signature header naming two agents (the second one right) is refused with 2001."""
    agent = await ctx.main_agent()
    _, body = agent.report()
    sig = f'agent="{uuid.uuid4()}", ' + agent.sign(body)
    ans = await ctx.send(agent, body, signature=sig, what="agent named twice")
    return [expect_code("MS-SEC-19", "a signature header naming two agents", body, ans, 2001)]


@check("MS-SEC-5", classes=CORE, role="manager")
async def enrollment_proof_of_possession(ctx: ManagerContext) -> list[Finding]:
    """An Enrollment signed by a key other than the enclosed one is refused with 2003."""
    agent, other = SimAgent(), SimAgent()
    body = agent.enrollment(await ctx.token())
    sig = other.sign(body, agent.agent_id)
    ans = await post(ctx.client, ctx.url, ENROLL_PATH, body, signature=sig)
    ctx._log("enrollment signed by another key", body, ans)
    return [expect_code("MS-SEC-5", "an Enrollment signed by another key", body, ans, 2003)]


@check("MS-HTTP-8", "MS-XML-7", classes=CORE + HTTP, role="manager")
async def processing_order(ctx: ManagerContext) -> list[Finding]:
    """The first failing check decides: media type, then signature, then XSD, then agentId."""
    agent = await ctx.main_agent()
    _, base = agent.report()
    broken = base.replace(b"</Report>", b"</Repor>")
    out = []
    ans = await ctx.send(agent, broken, signature=None, content_type="text/plain")
    out.append(expect_code("MS-HTTP-8", "unsigned, malformed, text/plain", broken, ans, 1005))
    ans2 = await ctx.send(agent, broken, signature=None, what="unsigned and malformed")
    out.append(expect_code("MS-HTTP-8", "unsigned and malformed", broken, ans2, 2001))
    foreign = agent.report(agent_id=str(uuid.uuid4()))[1]
    doc = foreign.replace(b"<percent>64</percent>", b"<percent>150</percent>")
    ans3 = await ctx.send(agent, doc, what="schema-invalid with a foreign agentId")
    out.append(expect_code("MS-XML-7", "percent 150 and a foreign agentId", doc, ans3, 1008))
    return out


# Further checks live in their own modules; importing them registers them.
from metersync_conformance.manager import ops, ownership, store  # noqa: E402, F401
