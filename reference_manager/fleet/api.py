"""The fleet's operator API (Quart blueprint): alerts, forecasts, orders, notifications.

Every route is under /api/v1 (the operator token and `g.scope` come from create_app's
before_request); every query filters by the scope, and a row outside it answers 404.
spec/openapi/manager.yaml describes each route and the webhook events.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Quart, g, request

from metersync_manager.fleet import alerts, evaluate, notify
from metersync_manager.fleet.service import FleetConfig, FleetService
from metersync_manager.params import BadParam, int_param, key_param, problem, time_param
from metersync_manager.scope import ScopeError
from metersync_manager.store import Store


def register(app: Quart, store: Store, *, run: Any, clock: Any, config: FleetConfig) -> None:
    """The blueprint, and the background service while the app serves."""
    bp = Blueprint("fleet", __name__, url_prefix="/api/v1")
    service = FleetService(store, config, clock)
    app.extensions["metersync_fleet"] = service

    if config.enabled:

        @app.before_serving
        async def _start() -> None:
            service.start()

        @app.after_serving
        async def _stop() -> None:
            await service.stop()

    @bp.errorhandler(PermissionError)
    async def _forbidden(exc: PermissionError) -> Any:
        return problem(403, "not allowed", str(exc))

    @bp.errorhandler(alerts.AlertError)
    @bp.errorhandler(notify.TargetError)
    async def _invalid(exc: ValueError) -> Any:
        return problem(400, "invalid request", str(exc))

    def choice(name: str, allowed: tuple[str, ...]) -> str | None:
        raw = request.args.get(name)
        if raw is not None and raw not in allowed:
            raise BadParam(f"{name} is one of {', '.join(allowed)}")
        return raw

    def ident(raw: str, name: str) -> int:
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**53 - 1:
            raise BadParam(f"{name} is a positive integer")
        return int(raw)

    def paging() -> tuple[int, int]:
        return int_param("limit", 100, 1, 1000), int_param("offset", 0, 0, 1_000_000_000)

    async def body() -> dict[str, Any]:
        data = await request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadParam("send a JSON object")
        return data

    @bp.get("/alerts")
    async def list_alerts() -> Any:
        limit, offset = paging()
        kw = {
            "state": choice("state", (*alerts.STATES, "active")),
            "rule": choice("rule", tuple(alerts.DEFAULTS)),
            "severity": choice("severity", alerts.SEVERITIES),
            "subject": request.args.get("subject"),
            "customer": request.args.get("customerId"),
            "since": time_param("since"),
            "limit": limit,
            "offset": offset,
        }
        scope = g.scope
        items = await run(lambda: alerts.list_alerts(store, scope, **kw))
        return {"items": items}

    @bp.get("/alerts/<alert_id>")
    async def get_alert(alert_id: str) -> Any:
        found = await run(alerts.get_alert, store, g.scope, ident(alert_id, "alertId"))
        return found or problem(404, "no such alert")

    @bp.post("/alerts/<alert_id>/acknowledge")
    async def acknowledge(alert_id: str) -> Any:
        found = await run(alerts.acknowledge, store, g.scope, ident(alert_id, "alertId"), clock())
        return found or problem(404, "no such alert")

    @bp.post("/alerts/<alert_id>/resolve")
    async def resolve(alert_id: str) -> Any:
        found = await run(alerts.resolve, store, g.scope, ident(alert_id, "alertId"), clock())
        return found or problem(404, "no such alert")

    @bp.get("/alert-settings")
    async def get_settings() -> Any:
        customer = request.args.get("customerId", "*")
        try:
            return await run(alerts.settings, store, g.scope, customer)
        except LookupError:
            return problem(404, "no such customer")

    @bp.put("/alert-settings/<customer>/<rule>")
    async def put_settings(customer: str, rule: str) -> Any:
        values = await body()
        return await run(alerts.put_settings, store, g.scope, customer, rule, values)

    @bp.get("/forecasts")
    async def forecasts() -> Any:
        limit, offset = paging()
        key = key_param("deviceKey")
        raw = request.args.get("withinDays")
        within = None
        if raw is not None:
            try:
                within = float(raw)
            except ValueError:
                within = -1.0
            if not 0 <= within <= 100000:
                raise BadParam("withinDays is a number of days from 0 to 100000")
        items = await run(evaluate.forecasts, store, g.scope, key, within, limit, offset)
        return {"items": items}

    @bp.get("/orders")
    async def orders() -> Any:
        limit, offset = paging()
        key = key_param("deviceKey")
        return {"items": await run(evaluate.orders, store, g.scope, key, limit, offset)}

    @bp.get("/notify-targets")
    async def targets() -> Any:
        return {"items": await run(notify.list_targets, store, g.scope)}

    @bp.post("/notify-targets")
    async def add_target() -> Any:
        data = await body()
        events = data.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise BadParam("events is a list of event types")
        for name in ("kind", "address"):
            if not isinstance(data.get(name), str):
                raise BadParam(f"{name} is required")
        digest = data.get("digestMinutes", 60)
        if not isinstance(digest, int) or isinstance(digest, bool):
            raise BadParam("digestMinutes is an integer")
        scope, now = g.scope, clock()
        try:
            made = await run(
                lambda: notify.add_target(
                    store,
                    scope,
                    kind=data["kind"],
                    address=data["address"],
                    customer=str(data.get("customerId", "*")),
                    now=now,
                    mode=str(data.get("mode", "immediate")),
                    events=events,
                    digest_minutes=digest,
                )
            )
        except ScopeError:
            return problem(404, "no such customer")
        return made, 201

    @bp.post("/notify-targets/<target_id>/<action>")
    async def enable(target_id: str, action: str) -> Any:
        if action not in ("enable", "disable"):
            return problem(404, "no such action")
        found = await run(
            notify.set_enabled,
            store,
            g.scope,
            ident(target_id, "targetId"),
            action == "enable",
            clock(),
        )
        return found or problem(404, "no such target")

    @bp.get("/notifications")
    async def deliveries() -> Any:
        limit, _ = paging()
        return {"items": await run(notify.deliveries, store, g.scope, limit)}

    app.register_blueprint(bp)
