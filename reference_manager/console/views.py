"""The console's pages: sign-in, fleet, device, agents, alerts, billing, admin."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, abort, g, redirect, render_template, request, url_for

from metersync import xml_edge
from metersync.errors import ProtocolError
from metersync_manager import api_tenancy, billing, channel, extract
from metersync_manager.console import admin, charts, intel, queries, web
from metersync_manager.console.accounts import AccountError, Accounts, new_password
from metersync_manager.device_state import supply_summary
from metersync_manager.extract import iso, utc_naive
from metersync_manager.fleet import alerts as fleet_alerts
from metersync_manager.scope import ROLES, Scope, ScopeError
from metersync_manager.store import Store
from metersync_manager.tenancy import TenancyError

HERE = Path(__file__).parent
Run = Callable[..., Awaitable[Any]]
THRESHOLD_TTL = 30.0  # seconds the agents' poll intervals are reused between pages
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
PUBLIC = {"console.login", "console.static", "console.root"}


def _flag(name: str) -> bool:
    return request.args.get(name) in ("1", "on", "true")


def _fleet_filter() -> queries.FleetFilter:
    a = request.args
    site = a.get("site") or ""
    return queries.FleetFilter(
        customer=a.get("customer") or None,
        site=int(site) if site.isdigit() else None,
        vendor=a.get("vendor") or None,
        status=a.get("status") or None,
        agent=(a.get("agent") or "")[:36] or None,
        low=_flag("low"),
        silent=_flag("silent"),
        alerts=_flag("alerts"),
        q=(a.get("q") or "").strip()[:100] or None,
        sort=a.get("sort") if a.get("sort") in queries.SORTS else "key",
        desc=a.get("dir") == "desc",
        cursor=a.get("cursor") or None,
    )


def _period(now: datetime) -> tuple[datetime, datetime, str, str]:
    """The billing period from ?from=YYYY-MM-DD&to=YYYY-MM-DD (default: this month so far)."""
    first = now.replace(day=1).strftime("%Y-%m-%d")
    raw_from = request.args.get("from") or first
    raw_to = request.args.get("to") or now.strftime("%Y-%m-%d")
    if not (_DATE.match(raw_from) and _DATE.match(raw_to)):
        abort(400)
    try:
        start = datetime.fromisoformat(raw_from).replace(tzinfo=UTC)
        end = datetime.fromisoformat(raw_to).replace(tzinfo=UTC) + timedelta(days=1)
    except ValueError:
        abort(400)
    if end <= start:
        abort(400)
    return start, end, raw_from, raw_to


def blueprint(store: Store, run: Run, hub: channel.ChannelHub, clock: Callable[[], datetime]):
    bp = Blueprint(
        "console",
        __name__,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/console/static",
    )
    accounts = Accounts(store)
    cache: dict[str, Any] = {"at": -1e9, "th": None}

    async def thresholds() -> queries.Thresholds:
        if time.monotonic() - cache["at"] > THRESHOLD_TTL:

            def read() -> queries.Thresholds:
                with store.reading() as conn:
                    return queries.thresholds(conn, utc_naive(clock()))

            cache["th"], cache["at"] = await run(read), time.monotonic()
        return cache["th"]

    async def choices() -> dict[str, list[Any]]:
        """The filters' values (customers, sites, vendors, statuses) of this scope, reused
        like the thresholds: they change far more rarely than pages are opened."""
        key = f"choices {g.scope.role} {g.scope.encode()}"
        hit = cache.get(key)
        if hit is None or time.monotonic() - hit[0] > THRESHOLD_TTL:
            hit = cache[key] = (time.monotonic(), await query(queries.choices, g.scope))
        return hit[1]

    async def query(fn: Callable[..., Any], *args: Any) -> Any:
        def go() -> Any:
            with store.reading() as conn:
                return fn(conn, *args)

        return await run(go)

    async def page(template: str, **context: Any) -> str:
        return await render_template(f"console/{template}", **context)

    # --- the guard ----------------------------------------------------------------------------

    @bp.before_request
    async def _guard() -> Any:
        g.session = None
        token = request.cookies.get(web.SESSION_COOKIE)
        if token and len(token) <= 128:
            g.session = await run(accounts.session, token, clock())
        if g.session is not None:
            g.scope = g.session.scope  # every console query filters by it
        if request.method == "POST" and request.endpoint != "console.login":
            form = await request.form
            if g.session is None or not web.csrf_ok(form, g.session.csrf):
                return await _refuse(403, "This form has expired or did not come from this site.")
        if g.session is None and request.endpoint not in PUBLIC:
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("console.login", next=target))
        return None

    @bp.after_request
    async def _headers(resp: Response) -> Response:
        for k, v in web.HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    async def _refuse(status: int, message: str) -> tuple[str, int]:
        return await page("error.html", status=status, message=message), status

    def _need(ok: bool) -> None:
        if not ok:
            abort(403)

    @bp.errorhandler(403)
    async def _forbidden(_exc: Any) -> tuple[str, int]:
        return await _refuse(403, "Your role does not allow this.")

    @bp.errorhandler(404)
    async def _missing(_exc: Any) -> tuple[str, int]:
        return await _refuse(404, "There is nothing here, or it is outside your customers.")

    @bp.errorhandler(400)
    async def _bad(_exc: Any) -> tuple[str, int]:
        return await _refuse(400, "That request had a value this page cannot use.")

    # --- sign-in ------------------------------------------------------------------------------

    @bp.get("/")
    async def root() -> Any:
        return redirect(url_for("console.fleet"))

    @bp.route("/console/login", methods=["GET", "POST"])
    async def login() -> Any:
        csrf = web.login_csrf()
        nxt = request.args.get("next") or ""
        if not nxt.startswith("/console/") or nxt.startswith("//"):
            nxt = url_for("console.fleet")
        error = None
        status = 200
        if request.method == "POST":
            form = await request.form
            username = (form.get("username") or "").strip()[:64]
            address = web.client_address()
            now = clock()
            if not web.csrf_ok(form, request.cookies.get(web.LOGIN_COOKIE)):
                error, status = "The sign-in form expired; please try again.", 403
            elif await run(accounts.blocked, username, address, now):
                error, status = "Too many failed sign-ins; wait 15 minutes and try again.", 429
            else:
                got = await run(accounts.sign_in, username, form.get("password") or "", address,
                                now)  # fmt: skip
                if got is not None:
                    resp = redirect(nxt)
                    web.set_cookie(resp, web.SESSION_COOKIE, got[0], None, "/")
                    resp.delete_cookie(web.LOGIN_COOKIE, path="/console/login")
                    return resp
                error, status = "Wrong user name or password.", 401
        body = await page("login.html", error=error, csrf=csrf, next=nxt)
        resp = Response(body, status=status, content_type="text/html; charset=utf-8")
        if status == 429:
            resp.headers["Retry-After"] = "900"
        web.set_cookie(resp, web.LOGIN_COOKIE, csrf, 3600, "/console/login")
        return resp

    @bp.post("/console/logout")
    async def logout() -> Any:
        await run(accounts.sign_out, request.cookies.get(web.SESSION_COOKIE) or "")
        resp = redirect(url_for("console.login"))
        resp.delete_cookie(web.SESSION_COOKIE, path="/")
        return resp

    # --- fleet --------------------------------------------------------------------------------

    @bp.get("/console/")
    async def fleet() -> Any:
        f = _fleet_filter()
        th = await thresholds()
        now = utc_naive(clock())
        counts = await query(queries.counts, g.scope, th, now)
        f.silent_share = counts["silent"] / max(counts["devices"], 1)
        try:
            rows, nxt = await query(queries.fleet_page, g.scope, f, th)
        except ValueError:
            abort(400)
        counts["alerts"] = await query(intel.alert_counts, g.scope)
        running_out = await query(intel.running_out, g.scope)
        opts = await choices()
        args = {k: v for k, v in request.args.items() if k != "cursor" and v}
        return await page(
            "fleet.html",
            rows=rows,
            counts=counts,
            running_out=running_out,
            running_days=intel.RUNNING_OUT_DAYS,
            opts=opts,
            f=f,
            args=args,
            next_url=f"?{urlencode({**args, 'cursor': nxt})}" if nxt else None,
            first_url=f"?{urlencode(args)}" if f.cursor else None,
            sort_url=lambda s: (
                "?"
                + urlencode(
                    {
                        **{k: v for k, v in args.items() if k not in ("sort", "dir")},
                        "sort": s,
                        **({"dir": "desc"} if f.sort == s and not f.desc else {}),
                    }
                )
            ),
            now=now,
        )

    # --- one device ---------------------------------------------------------------------------

    async def _device(key: str) -> dict[str, Any]:
        dev = await query(queries.device, g.scope, key)
        if dev is None:
            abort(404)
        return dev

    async def _device_page(key: str, fresh: dict[str, Any] | None = None) -> str:
        dev = await _device(key)
        now = utc_naive(clock())
        latest = await run(store.latest, key)
        ips = await run(store.ip_history, key)
        hist = await query(queries.history, key)
        supplies = await query(queries.supply_history, key, queries.since_days(now, 90))
        volumes = await query(queries.monthly_volumes, key, now)
        forecasts = await query(intel.device_forecasts, key)
        open_alerts = await query(intel.device_alerts, g.scope, key)
        supply_chart = charts.supply_levels(
            "Supply levels, last 90 days",
            [(v["name"], _fill(v["colour"]), v["points"]) for _, v in sorted(supplies.items())],
        )
        marks = []
        months = volumes["months"]
        for s in volumes["series"]:
            for z in s["resets"]:
                j = max(i for i, mo in enumerate(months) if mo <= z.at) if months else 0
                marks.append((j, f"{s['kind']} reset {z.before}→{z.after}"))
        for e in hist["events"]:
            if e["kind"] in ("swap-in", "swap-out") and months and e["at"] >= months[0]:
                j = max(i for i, mo in enumerate(months) if mo <= e["at"])
                marks.append((j, e["kind"]))
        volume_chart = charts.monthly_bars(
            "Monthly page volume",
            months,
            [(s["name"], s["months"]) for s in volumes["series"]],
            marks,
        )
        return await page(
            "device.html",
            dev=dev,
            latest=latest,
            bars=[
                (supply_summary(_supply_row(s)), forecasts.get(s["index"]))
                for s in (latest or {}).get("supplies", [])
            ],
            open_alerts=open_alerts,
            here=request.path,
            ips=ips,
            hist=hist,
            supply_chart=supply_chart,
            volume_chart=volume_chart,
            fresh=fresh,
            channel_on=await _connected(dev["owner_agent_id"] or dev["last_agent_id"]),
        )

    async def _connected(agent_id: str | None) -> bool:
        return any(c["agentId"] == agent_id for c in await hub.everywhere())

    @bp.get("/console/devices/<path:key>")
    async def device(key: str) -> Any:
        return await _device_page(key)

    @bp.post("/console/devices/<path:key>/read-now")
    async def read_now(key: str) -> Any:
        """A fresh read through the agent's channel, shown and never stored (MS-CH-18)."""
        dev = await _device(key)
        agent_id = dev["owner_agent_id"] or dev["last_agent_id"]
        fresh: dict[str, Any]
        try:
            raw, _ = await hub.ask_anywhere(agent_id, f"/devices/{key}/fresh")
            answer = channel.inner_document(raw)
            if answer.status != 200:
                root = xml_edge.parse_tree(answer.document)
                msg = root.findtext(f"{{{xml_edge.NAMESPACE}}}message") or "no detail"
                fresh = {"error": f"the agent answered {answer.status}: {msg}"}
            else:
                xml_edge.parse_message(answer.document, expect=("Device",))
                rows = extract.device_rows(xml_edge.parse_tree(answer.document))
                fresh = {
                    "polled_at": rows.reading["polled_at"],
                    "status": rows.reading["device_status"],
                    "counters": rows.counters,
                    "supplies": [supply_summary(s) for s in rows.supplies],
                    "errors": rows.errors,
                }
        except channel.NotConnected:
            fresh = {"error": "the agent holds no channel (bidirectional mode is off)"}
        except channel.Busy:
            fresh = {"error": "the agent is busy with other requests; try again shortly"}
        except TimeoutError:
            fresh = {"error": "the agent did not answer in time"}
        except (ProtocolError, ValueError) as exc:
            fresh = {"error": f"the agent's answer was not usable: {exc}"}
        return await _device_page(key, fresh)

    # --- agents and alerts ----------------------------------------------------------------------

    @bp.get("/console/agents")
    async def agents() -> Any:
        offset = request.args.get("offset", "0")
        offset_n = int(offset) if offset.isdigit() else 0
        rows = await query(queries.agents, g.scope, await thresholds(), offset_n)
        channels = {c["agentId"]: c for c in await hub.everywhere()}
        return await page("agents.html", rows=rows, channels=channels, offset=offset_n)

    @bp.get("/console/alerts")
    async def alerts() -> Any:
        """The inbox of fleet alerts: one state at a time, filtered by severity and customer."""
        f = intel.AlertFilter.parse(request.args)
        rows, more = await query(intel.alert_page, g.scope, f)
        tabs = await query(intel.alert_counts, g.scope, f)
        args = {k: v for k, v in request.args.items() if k != "offset" and v}
        return await page(
            "alerts.html",
            rows=rows,
            f=f,
            tabs=tabs,
            opts=await choices(),
            tab_url=lambda state: "?" + urlencode({**args, "state": state}),
            prev_url=(
                "?" + urlencode({**args, "offset": max(f.offset - f.limit, 0)})
                if f.offset
                else None
            ),
            next_url="?" + urlencode({**args, "offset": f.offset + f.limit}) if more else None,
            here=request.full_path,
        )

    @bp.post("/console/alerts/<int:alert_id>/<action>")
    async def alert_action(alert_id: int, action: str) -> Any:
        """Acknowledge or resolve (the operator API's functions, under the session's scope)."""
        act = {"acknowledge": fleet_alerts.acknowledge, "resolve": fleet_alerts.resolve}.get(action)
        if act is None:
            abort(404)
        try:
            done = await run(act, store, g.scope, alert_id, clock())
        except PermissionError:
            abort(403)
        except fleet_alerts.AlertError as exc:
            return await _refuse(409, str(exc))
        if done is None:
            abort(404)
        back = (await request.form).get("next") or ""
        if not back.startswith("/console/") or back.startswith("//"):
            back = url_for("console.alerts")
        return redirect(back)

    # --- billing ------------------------------------------------------------------------------

    @bp.get("/console/billing")
    async def billing_page() -> Any:
        """The meter table of a customer and period: the lines of the API's export."""
        opts = await query(queries.choices, g.scope)
        customers = [c for c, _ in opts["customers"]]
        customer = request.args.get("customer") or (customers[0] if customers else "")
        if customer not in customers:
            abort(404)
        start, end, raw_from, raw_to = _period(clock())
        period = billing.Period(utc_naive(start), utc_naive(end), customer)
        scope = g.scope
        chunks = await run(lambda: list(store.meter_lines(period, scope)))
        lines = [x for chunk in chunks for x in chunk]
        export = {"customer": customer, "from": iso(period.start), "to": iso(period.end)}
        return await page(
            "billing.html",
            opts=opts,
            customer=customer,
            lines=lines,
            raw_from=raw_from,
            raw_to=raw_to,
            csv_url=url_for("console.billing_csv", **export, format="csv"),
        )

    @bp.get("/console/billing/meters.csv")
    async def billing_csv() -> Any:
        """The download: GET /api/v1/meters itself, under the session's scope."""
        return await api_tenancy.meters()

    # --- admin --------------------------------------------------------------------------------

    @bp.get("/console/admin")
    async def admin_page() -> Any:
        _need(g.scope.can_admin)
        return await page(
            "admin.html",
            data=await run(admin.overview, store),
            users=await run(accounts.users),
            roles=ROLES,
            shown=None,
            error=None,
        )

    async def _admin_result(shown: dict[str, str] | None, error: str | None) -> tuple[str, int]:
        body = await page(
            "admin.html",
            data=await run(admin.overview, store),
            users=await run(accounts.users),
            roles=ROLES,
            shown=shown,
            error=error,
        )
        return body, 400 if error else 200

    def _scope_of(form: Any, operator: str) -> Scope:
        customers = frozenset(x for x in (form.get("customers") or "").replace(",", " ").split())
        return Scope(form.get("role") or "", customers, operator)

    @bp.post("/console/admin/<what>")
    async def admin_post(what: str) -> Any:
        _need(g.scope.can_admin)
        form = await request.form
        now = clock()
        shown = None
        try:
            if what == "customers":
                await run(admin.create_customer, store, form.get("customer_id") or "",
                          form.get("name") or "", now)  # fmt: skip
            elif what == "sites":
                await run(admin.create_site, store, form.get("customer_id") or "",
                          form.get("name") or "", now)  # fmt: skip
            elif what == "enrollment-tokens":
                hours = form.get("hours") or "24"
                token = await run(
                    admin.create_enrollment_token,
                    store,
                    form.get("customer_id") or "",
                    form.get("site") or None,
                    timedelta(hours=int(hours) if hours.isdigit() else 24),
                    now,
                )
                shown = {"what": "Enrollment token (shown once)", "value": token}
            elif what == "operator-tokens":
                name = form.get("name") or ""
                token = await run(admin.create_operator_token, store, name,
                                  _scope_of(form, name), now)  # fmt: skip
                shown = {"what": "Operator token (shown once)", "value": token}
            elif what == "operator-tokens-revoke":
                await run(store.revoke_operator_tokens, form.get("name") or "", now)
            elif what == "users":
                username = form.get("username") or ""
                password = new_password()
                await run(accounts.create, username, password, _scope_of(form, username), now)
                shown = {"what": f"Password of {username} (shown once)", "value": password}
            elif what == "users-reset":
                password = new_password()
                await run(accounts.reset, form.get("username") or "", password, now)
                shown = {"what": f"New password of {form.get('username')}", "value": password}
            elif what == "users-disable":
                await run(accounts.disable, form.get("username") or "", now)
            else:
                abort(404)
        except (admin.AdminError, AccountError, ScopeError, TenancyError) as exc:
            return await _admin_result(None, str(exc))
        if shown is None:
            return redirect(url_for("console.admin_page"))
        return await _admin_result(shown, None)

    @bp.app_template_filter("when")
    def _when(dt: datetime | None) -> str:
        return "—" if dt is None else dt.strftime("%Y-%m-%d %H:%M")

    @bp.app_context_processor
    def _context() -> dict[str, Any]:
        return {"session": g.get("session"), "bar": _bar, "days_text": intel.days_text}

    return bp


def _offset_url(args: dict[str, str], offset: int) -> str:
    return "?" + urlencode({**args, "offset": offset})


def _supply_row(s: dict[str, Any]) -> dict[str, Any]:
    """A supply of the read API's snapshot as the stored row shape device_state reads."""
    return {
        "idx": s["index"],
        "description": s["description"],
        "colour": s["colour"],
        "type": s["type"],
        "supply_class": s["supplyClass"],
        "level_raw": s["level"]["raw"],
        "level_meaning": s["level"]["meaning"],
        "max_raw": s["maxCapacity"]["raw"],
        "max_meaning": s["maxCapacity"]["meaning"],
        "percent_x100": None if s["percent"] is None else round(s["percent"] * 100),
    }


BAR_COLOURS = {
    "black": "#222222",
    "cyan": "#0097a7",
    "magenta": "#c2185b",
    "yellow": "#f9a825",
}


def _fill(colour: str | None) -> str | None:
    """The bar and chart colour of a supply named like a toner colour; None otherwise."""
    low = (colour or "").lower()
    return next((v for k, v in BAR_COLOURS.items() if k in low), None)


def _bar(s: dict[str, Any]) -> dict[str, Any]:
    """How a supply bar is drawn: width in percent (None: no bar), fill, and its text."""
    p = s.get("percent")
    fill = _fill(s.get("colour")) or "#607d8b"
    if p is not None:
        text = f"{p:g} % full" if s.get("receptacle") else f"{p:g} %"
        return {"width": p, "fill": fill, "text": text, "state": "low" if s["low"] else "ok"}
    if s.get("meaning") == "exact":  # a quantity, but no percentage is defined (MS-DEV-17)
        cap = s.get("max")
        text = f"level {s.get('level')}" + (f" of {cap}" if cap is not None else ", capacity ?")
        return {"width": None, "fill": fill, "text": text, "state": "no-percent"}
    text = {
        "someRemaining": "some remaining",
        "unknown": "unknown",
        "other": "other",
        "invalid": "invalid",
    }.get(s.get("meaning") or "", s.get("meaning") or "unknown")
    return {"width": None, "fill": fill, "text": text, "state": s.get("meaning") or "unknown"}
