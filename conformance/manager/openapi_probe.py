"""The manager's JSON read API against its OpenAPI document, with schemathesis (bounded).

Only GET operations whose documented answers are JSON are exercised (the XML ingest endpoints
are the XSD's business, checked by the other manager checks). Each operation gets a few
generated requests; every answer must not be a server error, must have a documented status and
content type, and must match its JSON Schema.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import httpx

CANDIDATES = ("/openapi.yaml", "/openapi.json", "/api/openapi.yaml", "/api/openapi.json")


async def find_served(client: httpx.AsyncClient, base: str) -> str | None:
    """The URL of an OpenAPI document the manager serves, if any."""
    for path in CANDIDATES:
        url = base.rstrip("/") + path
        try:
            resp = await client.get(url)
        except httpx.HTTPError:
            continue
        if resp.status_code == 200 and b"openapi" in resp.content[:200]:
            return url
    return None


def _json_get(op: Any) -> bool:
    if op.method.upper() != "GET":
        return False
    for resp in (op.definition.raw.get("responses") or {}).values():
        content = resp.get("content", {}) if isinstance(resp, dict) else {}
        if any("json" in media for media in content):
            return True
    return False


def run(
    source: str | Path,
    base_url: str,
    examples: int = 5,
    headers: dict[str, str] | None = None,
    verify: bool | str = True,
) -> tuple[list[str], int]:
    """(problems, operations run); `headers` go with every request (the operator token),
    `verify` is the CA bundle for an https URL (`--cacert`). Blocking: call it in a thread.
    One operation's trouble never stops the others: it is a problem of that operation."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    warnings.filterwarnings("ignore")
    src = str(source)
    if src.startswith(("http://", "https://")):
        schema = schemathesis.openapi.from_url(src)
    else:
        schema = schemathesis.openapi.from_path(src)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    problems: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op is None or not _json_get(op):
            continue
        ran += 1
        label = f"{op.method.upper()} {op.path}"
        try:
            found = _probe(op, label, base_url, checks, examples, headers or {}, verify)
        except Exception as exc:  # e.g. an ExceptionGroup from the library: still a verdict
            found = [f"{label}: the probe could not complete: {_text(exc)}"]
        problems.extend(found)
    return problems, ran


def _text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, BaseExceptionGroup):
        text += " [" + "; ".join(_text(e) for e in exc.exceptions[:3]) + "]"
    return f"{type(exc).__name__}: {text}"[:300]


def _probe(
    op: Any,
    label: str,
    base_url: str,
    checks: list[Any],
    examples: int,
    headers: dict[str, str],
    verify: bool | str,
) -> list[str]:
    from hypothesis import HealthCheck, given, settings

    found: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def probe(case: Any) -> None:
        if found:
            return
        try:
            case.call_and_validate(
                base_url=base_url, checks=checks, headers=headers, timeout=30, verify=verify
            )
        except Exception as exc:  # a failed check: keep the first, as evidence
            found.append(f"{label} ({case.formatted_path}): {_text(exc)}")

    probe()
    return found
