"""Operator API: customers, sites, moves, contract meters and the meter export (a blueprint).

Every route runs after the `/api/` guard of create_app, which puts the caller's Scope in
`g.scope`. A resource outside the scope is answered 404 like one that does not exist; an
action beyond the role is answered 403.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, current_app, g, request

from metersync_manager import billing, paging
from metersync_manager.contract import ContractError
from metersync_manager.extract import iso, utc_naive
from metersync_manager.params import (
    BadParam,
    check_key,
    int_param,
    key_param,
    kind_param,
    parse_time,
    problem,
    time_param,
)
from metersync_manager.scope import Scope, ScopeError, check_customer_id
from metersync_manager.tenancy import TenancyError

bp = Blueprint("tenancy", __name__)
CSV_TYPE = "text/csv; charset=utf-8; header=present"


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    return await current_app.extensions["metersync_run"](fn, *args)


def store() -> Any:
    return current_app.extensions["metersync_store"]


def scope() -> Scope:
    return g.scope  # type: ignore[no-any-return]


def clock() -> Any:
    return current_app.extensions["metersync_clock"]()


async def _customer_visible(customer_id: str, defaults_ok: bool = False) -> bool:
    """The customer exists and is in the caller's scope (`*`, the dealer's defaults, where
    allowed); a malformed id is a 400."""
    if defaults_ok and customer_id == "*":
        return True
    try:
        check_customer_id(customer_id)
    except ScopeError as exc:
        raise BadParam(str(exc)) from None
    return scope().allows(customer_id) and await run(store().customer_exists, customer_id)


def _forbidden(what: str) -> tuple[dict[str, Any], int]:
    return problem(403, "not allowed", f"the role {scope().role} cannot {what}")


async def _body() -> dict[str, Any]:
    data = await request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadParam("send a JSON object")
    return data


def _text(data: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 255:
        raise BadParam(f"{name} must be a string of 1 to 255 characters")
    return value


# --- customers and sites -----------------------------------------------------------------------


@bp.get("/api/v1/customers")
async def list_customers() -> Any:
    limit, after = paging.params(str)
    items = await run(store().customers, scope(), limit + 1, after[0] if after else None)
    return paging.page(items, limit, lambda x: (x["customerId"],))


@bp.post("/api/v1/customers")
async def create_customer() -> Any:
    if not scope().can_admin:
        return _forbidden("create customers")
    data = await _body()
    cid, name = _text(data, "customerId"), _text(data, "name")
    try:
        await run(store().create_customer, cid, name, clock())
    except TenancyError as exc:
        return problem(409 if "exists" in str(exc) else 400, "customer not created", str(exc))
    return {"customerId": cid, "name": name}, 201


@bp.post("/api/v1/customers/<customer_id>/sites")
async def create_site(customer_id: str) -> Any:
    if not await _customer_visible(customer_id):
        return problem(404, "no such customer")
    if not scope().can_admin:
        return _forbidden("create sites")
    name = _text(await _body(), "name")
    try:
        site_id = await run(store().create_site, customer_id, name, clock())
    except TenancyError as exc:
        return problem(404, "no such customer", str(exc))
    return {"customerId": customer_id, "siteId": site_id, "name": name}, 201


# --- moves ------------------------------------------------------------------------------------


async def _move(subject: str, subject_id: str, visible: bool) -> Any:
    if not visible:
        return problem(404, f"no such {subject}")
    if not scope().can_write:
        return _forbidden(f"move a {subject}")
    data = await _body()
    customer = _text(data, "customerId")
    site = _text(data, "site", required=False)
    if not await _customer_visible(customer):
        return problem(404, "no such customer")
    try:
        moved = await run(
            store().move, subject, subject_id, customer, site, clock(), scope().operator
        )
    except TenancyError as exc:
        return problem(404, "not moved", str(exc))
    return {
        "subject": subject,
        "id": subject_id,
        "customerId": customer,
        "site": site,
        "devicesMoved": moved,
    }


@bp.post("/api/v1/devices/<path:device_key>/assignment")
async def move_device(device_key: str) -> Any:
    check_key(device_key)
    return await _move("device", device_key, await run(store().device_visible, device_key, scope()))


@bp.post("/api/v1/agents/<agent_id>/assignment")
async def move_agent(agent_id: str) -> Any:
    return await _move("agent", agent_id, await run(store().agent_visible, agent_id, scope()))


@bp.get("/api/v1/devices/<path:device_key>/events")
async def device_events(device_key: str) -> Any:
    check_key(device_key)
    if not await run(store().device_visible, device_key, scope()):
        return problem(404, "no such device")
    limit, after = paging.params(str, int)
    since = (parse_time(after[0], "cursor"), after[1]) if after else None
    items = await run(store().device_events, device_key, limit + 1, since)
    body, status, headers = paging.page(items, limit, lambda x: (x["at"], x["eventId"]))
    return {"deviceKey": device_key, **body}, status, headers


# --- contract meters --------------------------------------------------------------------------


@bp.get("/api/v1/customers/<customer_id>/contract-meters")
async def list_contract_meters(customer_id: str) -> Any:
    if not await _customer_visible(customer_id, defaults_ok=True):
        return problem(404, "no such customer")
    return {"customerId": customer_id, "items": await run(store().contract_meters, customer_id)}


@bp.put("/api/v1/customers/<customer_id>/contract-meters/<name>")
async def define_contract_meter(customer_id: str, name: str) -> Any:
    if not await _customer_visible(customer_id, defaults_ok=True):
        return problem(404, "no such customer")
    if not scope().can_admin:
        return _forbidden("define contract meters")
    terms = _text(await _body(), "terms")
    try:
        await run(store().define_contract_meter, customer_id, name, terms, clock())
    except (ContractError, TenancyError) as exc:
        return problem(400, "contract meter not stored", str(exc))
    return {"customerId": customer_id, "name": name, "terms": terms}


@bp.delete("/api/v1/customers/<customer_id>/contract-meters/<name>")
async def remove_contract_meter(customer_id: str, name: str) -> Any:
    if not await _customer_visible(customer_id, defaults_ok=True):
        return problem(404, "no such customer")
    if not scope().can_admin:
        return _forbidden("remove contract meters")
    if not await run(store().remove_contract_meter, customer_id, name):
        return problem(404, "no such contract meter")
    return Response(status=204)


# --- the meter export -------------------------------------------------------------------------


def _period() -> billing.Period:
    start, end = time_param("from", required=True), time_param("to", required=True)
    assert start is not None and end is not None
    if end <= start:
        raise BadParam("to must be after from")
    customer = request.args.get("customer")
    tolerance = int_param("tolerance", int(billing.DEFAULT_TOLERANCE.total_seconds()), 0, 10**8)
    return billing.Period(
        utc_naive(start),
        utc_naive(end),
        customer,
        key_param("deviceKey"),
        kind_param(),
        timedelta(seconds=tolerance),
    )


def _wants_csv() -> bool:
    fmt = request.args.get("format")
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise BadParam("format must be csv or json")
        return fmt == "csv"
    return "text/csv" in (request.headers.get("Accept") or "")


def _csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


@bp.get("/api/v1/meters")
async def meters() -> Any:
    """MS-OWN-6: the export of (from, to], streamed; one page of `limit` device intervals
    with a cursor when `limit` is given."""
    period = _period()
    as_csv = _wants_csv()
    if period.customer is not None and not await _customer_visible(period.customer):
        return problem(404, "no such customer")
    limit = int_param("limit", 0, 1, 10000) if "limit" in request.args else None
    cursor = request.args.get("cursor")
    try:
        after = billing.parse_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise BadParam(str(exc)) from None
    sc, st, runner = scope(), store(), current_app.extensions["metersync_run"]
    headers: dict[str, str] = {}
    first: list[dict[str, Any]] = []
    nxt: str | None = None
    if limit is not None:
        first, nxt = await run(store().meter_page, period, sc, after, limit)
        if nxt:
            args = dict(request.args)
            args["cursor"] = nxt
            headers["Link"] = f'<{request.path}?{urlencode(args)}>; rel="next"'

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        if limit is not None:
            if first:
                yield first
            return
        page_after = after
        while True:
            lines, more = await runner(st.meter_page, period, sc, page_after, 500)
            if lines:
                yield lines
            if more is None:
                return
            page_after = billing.parse_cursor(more)

    async def csv_body() -> AsyncIterator[bytes]:
        yield _csv_text([list(billing.CSV_COLUMNS)]).encode()
        async for lines in pages():
            yield _csv_text([billing.csv_row(x) for x in lines]).encode()

    async def json_body() -> AsyncIterator[bytes]:
        head = {"from": iso(period.start), "to": iso(period.end)}
        yield json.dumps(head)[:-1].encode() + b', "lines": ['
        sep = b""
        async for lines in pages():
            for x in lines:
                yield sep + json.dumps(x).encode()
                sep = b", "
        yield b'], "nextCursor": ' + json.dumps(nxt).encode() + b"}"

    if as_csv:
        headers["Content-Disposition"] = 'attachment; filename="meters.csv"'
        return Response(csv_body(), content_type=CSV_TYPE, headers=headers)
    return Response(json_body(), content_type="application/json", headers=headers)
