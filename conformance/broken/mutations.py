# ruff: noqa: E501  (the table holds source lines exactly as the reference writes them)
"""One-line mutations of the reference manager: the defects an independent vendor is likely
to ship, each breaking one MUST of Manager-Core/HTTP (used as `broken manager mut:NAME`).

A mutation replaces one line of a module's source, exactly as written there (it must occur
once), before anything imports the module: the mutant is the reference with that one line
changed. `catches` names the requirement whose checks must FAIL for the mutant.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    module: str
    old: str
    new: str
    catches: str  # the requirement the mutant breaks


ING, APP, SIG, EDGE = (
    "metersync_manager.ingest",
    "metersync_manager.app",
    "metersync.signing",
    ("metersync.xml_edge"),
)
EXT, LIM, ACC = (
    "metersync_manager.extract",
    "metersync_manager.limits",
    "metersync_manager.accept",
)
STORE, BILL = "metersync_manager.store", "metersync_manager.billing"
OWN = "metersync_manager.ownership"

MUTATIONS: dict[str, Mutation] = {
    # --- signatures and identity ----------------------------------------------------------
    "report-unverified": Mutation(
        ING,
        "        signing.verify(agent.public_key, raw, sig)\n        return None",
        "        return None",
        "MS-SEC-12",
    ),
    "enroll-unverified": Mutation(
        ING, "    signing.verify(public_key_b64(enrollment), raw, sig)\n", "", "MS-SEC-5"
    ),
    "enroll-signer-unchecked": Mutation(
        ING, "    if sig.agent_id != enrollment.agent_id:", "    if False:", "MS-SEC-13"
    ),
    "report-signer-unchecked": Mutation(
        ING, "    if rows.agent_id != signer_id:", "    if False:", "MS-SEC-13"
    ),
    "revoked-reports-ok": Mutation(
        ING,
        '    if agent.revoked:\n        raise ProtocolError("AGENT_REVOKED", f"the agent {agent.agent_id}',
        '    if False:\n        raise ProtocolError("AGENT_REVOKED", f"the agent {agent.agent_id}',
        "MS-SEC-9",
    ),
    "old-key-forever": Mutation(
        ING,
        "    if key_superseded_at is not None and rows.created_at >= key_superseded_at:",
        "    if False:",
        "MS-SEC-8",
    ),
    "old-key-current": Mutation(
        ING, "            return superseded_at", "            return None", "MS-SEC-8"
    ),  # fmt: skip
    "rekey-anyone": Mutation(
        ING,
        '        if not repeat:\n            raise ProtocolError(\n                "AGENT_ALREADY',
        '        if False:\n            raise ProtocolError(\n                "AGENT_ALREADY',
        "MS-SEC-7",
    ),
    "token-reusable": Mutation(
        ING,
        "    if token.used_by is not None and token.used_by != agent_id:",
        "    if False:",
        "MS-SEC-2",
    ),
    "any-alg": Mutation(SIG, '    if params["alg"] != ALGORITHM:', "    if False:", "MS-SEC-12"),
    "unknown-agent-500": Mutation(
        ING,
        '        raise ProtocolError("UNKNOWN_AGENT", f"no enrolled agent has the id {sig.agent_id!r}")',
        "        return None",
        "MS-SEC-11",
    ),
    "missing-sig-code": Mutation(
        SIG,
        '        raise ProtocolError("SIGNATURE_MISSING", f"the {HEADER} header is missing or empty")',
        '        raise ProtocolError("BAD_SIGNATURE", f"the {HEADER} header is missing or empty")',
        "MS-SEC-10",
    ),
    # --- clocks and windows -----------------------------------------------------------------
    "skew-minutes": Mutation(
        ING, "SKEW = timedelta(seconds=300)", "SKEW = timedelta(minutes=300)", "MS-SEC-15"
    ),
    "skew-past-only": Mutation(
        ING, "    if ahead > skew:", "    if ahead > skew * 20:", "MS-SEC-15"
    ),  # fmt: skip
    "horizon-short": Mutation(
        ING,
        "REPLAY_HORIZON = timedelta(days=400)",
        "REPLAY_HORIZON = timedelta(days=40)",
        "MS-DEL-19",
    ),  # fmt: skip
    # --- idempotence and receipts -------------------------------------------------------------
    "duplicate-accepted": Mutation(
        ING,
        "    status = model.ReceiptStatus.DUPLICATE if duplicate else model.ReceiptStatus.ACCEPTED",
        "    status = model.ReceiptStatus.ACCEPTED",
        "MS-DEL-2",
    ),
    "digest-prefix": Mutation(
        ING,
        "    return hashlib.sha256(raw).hexdigest()",
        "    return hashlib.sha256(raw[:64]).hexdigest()",
        "MS-DEL-4",
    ),  # fmt: skip
    "replay-as-duplicate": Mutation(
        STORE, "            if stored != job.sha256:", "            if False:", "MS-DEL-4"
    ),
    "receipt-wrong-id": Mutation(
        ACC,
        "    return ingest.receipt(rows.report_id, rows.agent_id, stored.duplicate, now, stored.devices)",
        "    return ingest.receipt(rows.agent_id, rows.agent_id, stored.duplicate, now, stored.devices)",
        "MS-DEL-2",
    ),
    # --- XML edge -------------------------------------------------------------------------------
    "doctype-ok": Mutation(EDGE, '            "doctype": "a DOCTYPE declaration",', "", "MS-XML-4"),
    "too-deep-ok": Mutation(
        EDGE,
        "MAX_DEPTH = 32  # MS-LIM-2: element nesting, root = 1",
        "MAX_DEPTH = 3200",
        "MS-LIM-2",
    ),  # fmt: skip
    "too-large-ok": Mutation(
        EDGE,
        "MAX_BYTES = 16 * 1024 * 1024  # MS-LIM-1: 16 MiB per document",
        "MAX_BYTES = 64 * 1024 * 1024",
        "MS-LIM-1",
    ),  # fmt: skip
    "schema-unchecked": Mutation(ING, "    xml_edge.validate_tree(root)\n", "", "MS-XML-5"),
    # --- HTTP binding ---------------------------------------------------------------------------
    "any-media-type": Mutation(
        APP, "    if mime not in ACCEPTED_TYPES:", "    if False:", "MS-HTTP-4"
    ),
    "no-gzip": Mutation(
        APP,
        '    if encoding not in ("identity", "gzip"):',
        '    if encoding not in ("identity",):',
        "MS-HTTP-6",
    ),
    "retry-after-missing": Mutation(
        APP, '        headers["Retry-After"] = str(exc.retry_after)', "        pass", "MS-HTTP-9"
    ),
    "retry-after-minutes": Mutation(
        APP,
        '        headers["Retry-After"] = str(exc.retry_after)',
        '        headers["Retry-After"] = str(exc.retry_after * 60)',
        "MS-HTTP-9",
    ),
    "rate-too-low": Mutation(
        LIM,
        "        self.capacity = float(per_minute)",
        "        self.capacity = per_minute / 4",
        "MS-LIM-5",
    ),  # fmt: skip
    "api-open": Mutation(
        APP,
        '        if not request.path.startswith("/api/") and request.path != "/metrics":',
        "        if True:",
        "MS-HTTP-18",
    ),
    "no-www-authenticate": Mutation(
        APP,
        '        return body, status, {"WWW-Authenticate": \'Bearer realm="metersync"\'}',
        "        return body, status",
        "MS-HTTP-18",
    ),
    # --- what is stored ---------------------------------------------------------------------------
    "usage-across-reset": Mutation(
        BILL,
        "    if flagged or value < series.last_value:",
        "    if flagged:",
        "MS-DEV-29",
    ),  # fmt: skip
    # --- ownership and series (chapter 21) ---------------------------------------------------
    "any-agent-owns": Mutation(
        OWN,
        "    if state.owner_agent_id in (None, agent_id):",
        "    if True:",
        "MS-OWN-2",
    ),  # fmt: skip
    "snapshot-from-the-future": Mutation(
        ING,
        "    late = [d for d in rows.devices if d.polled_at > rows.created_at + skew]",
        "    late: list = []",
        "MS-OWN-4",
    ),  # fmt: skip
    "series-without-label": Mutation(
        BILL,
        '    parts = ("" if counter.get(k) is None else str(counter[k]) for k in IDENTITY)',
        '    parts = ("" if counter.get(k) is None else str(counter[k]) for k in IDENTITY if k != "label")',
        "MS-BILL-1",
    ),  # fmt: skip
    "percent-unchecked": Mutation(
        EXT,
        '    if s["percent_x100"] is None:\n        return\n',
        "    return\n",
        "MS-DEV-17",
    ),  # fmt: skip
    "percent-tolerance": Mutation(
        EXT,
        '    if abs(Decimal(s["percent_x100"]) / 100 - want) > Decimal("0.01"):',
        '    if abs(Decimal(s["percent_x100"]) / 100 - want) > Decimal("5"):',
        "MS-DEV-17",
    ),
    "gaps-hidden": Mutation(
        STORE,
        "                    inner.c.sequence - inner.c.prev > 1,",
        "                    inner.c.sequence - inner.c.prev > 2,",
        "MS-DEL-6",
    ),
    # --- more windows, tokens and answers ---------------------------------------------------------
    "enroll-skew-unchecked": Mutation(ING, "    if off > skew:", "    if False:", "MS-SEC-15"),
    "skew-330": Mutation(
        ING, "SKEW = timedelta(seconds=300)", "SKEW = timedelta(seconds=330)", "MS-SEC-15"
    ),  # fmt: skip
    "revoked-reenroll": Mutation(
        ING,
        '        if agent.revoked:\n            raise ProtocolError("AGENT_REVOKED", f"the agent {agent_id}',
        '        if False:\n            raise ProtocolError("AGENT_REVOKED", f"the agent {agent_id}',
        "MS-SEC-9",
    ),
    "foreign-reenroll-token": Mutation(
        ING,
        "    if token.agent_id is not None and token.agent_id != agent_id:",
        "    if False:",
        "MS-SEC-8",
    ),  # fmt: skip
    "error-status-200": Mutation(
        APP,
        "    resp = xml_response(xml_edge.error_message(exc), exc.http_status, headers)",
        "    resp = xml_response(xml_edge.error_message(exc), 200, headers)",
        "MS-HTTP-5",
    ),
    "any-encoding": Mutation(
        APP, '    if encoding not in ("identity", "gzip"):', "    if False:", "MS-HTTP-6"
    ),
    "api-any-token": Mutation(
        APP,
        "            if scope is not None:",
        "            if True:",
        "MS-HTTP-18",
    ),
    "depth-33": Mutation(
        EDGE, "MAX_DEPTH = 32  # MS-LIM-2: element nesting, root = 1", "MAX_DEPTH = 33", "MS-LIM-2"
    ),  # fmt: skip
    # Of two MeterSync-Signature fields only the first is read (Table 8-4: they are one field).
    "first-signature-field": Mutation(
        SIG,
        '    return ", ".join(fields) if fields else None',
        "    return fields[0] if fields else None",
        "MS-SEC-10",
    ),
    # A duplicate's receipt counts the devices again, as if it stored them (MS-DEL-2: 0).
    "duplicate-devices-counted": Mutation(
        STORE,
        "            return Stored(duplicate=True, devices=0)",
        "            return Stored(duplicate=True, devices=len(rows.devices))",
        "MS-DEL-2",
    ),
    # A wrong path or method under /v1/ gets the framework's HTML page, not an Error.
    "html-not-found": Mutation(
        APP, '        if not request.path.startswith("/v1/"):', "        if True:", "MS-HTTP-19"
    ),  # fmt: skip
}


def stale(table: dict[str, Mutation]) -> list[str]:
    """The mutants whose line is not exactly once in its module (or that change nothing):
    a refactoring of the reference moved them."""
    out = []
    for name, mut in table.items():
        spec = importlib.util.find_spec(mut.module)
        if spec is None or spec.origin is None:
            out.append(f"{name}: no module {mut.module}")
            continue
        with open(spec.origin, encoding="utf-8") as f:
            n = f.read().count(mut.old)
        if n != 1 or mut.old == mut.new:
            out.append(f"{name}: {n}× in {mut.module}")
    return out


def apply(name: str, table: dict[str, Mutation] | None = None) -> None:
    """Load the mutated module in place of the reference's (before any import of it)."""
    mut = (MUTATIONS if table is None else table)[name]
    spec = importlib.util.find_spec(mut.module)
    if spec is None or spec.origin is None or spec.loader is None:
        raise SystemExit(f"mutation {name}: no module {mut.module}")
    with open(spec.origin, encoding="utf-8") as f:
        source = f.read()
    if source.count(mut.old) != 1:
        raise SystemExit(f"mutation {name}: the line to mutate is not once in {mut.module}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mut.module] = module
    code = compile(source.replace(mut.old, mut.new), spec.origin, "exec")
    exec(code, module.__dict__)  # noqa: S102 - the reference's own source, one line changed
    parent, _, child = mut.module.rpartition(".")
    setattr(sys.modules[parent], child, module)
