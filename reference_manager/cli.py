"""`metersync manager …`: serve the manager, create enrollment and operator tokens, revoke agents.

    metersync manager serve [--data-dir DIR] [--database URL] [--bind 127.0.0.1:8470]
                            [--log-level LEVEL] [--log-format text|json] [--no-access-log]
                            [--certfile CERT --keyfile KEY] [--smtp-bind 127.0.0.1:8025]
                            [--no-channel-websocket] [--rate-limit 600] [--enroll-failures 10]
                            [--trusted-proxy CIDR…] [--public-url URL] [--root-path /PREFIX]
    metersync manager token create [--expires 24h] [--agent AGENT_ID]
                                   [--data-dir DIR | --database URL]
    metersync manager api-token create [--name NAME] | revoke --name NAME  [--data-dir …]
    metersync manager user create NAME [--role R] [--customer C]… | reset NAME | disable NAME
    metersync manager agent revoke AGENT_ID [--data-dir DIR | --database URL]
    metersync manager mail refusals [--limit N] [--data-dir DIR | --database URL]
    metersync manager alerts list [--state active] [--rule R] [--customer C] [--limit N]
    metersync manager alerts ack|resolve ALERT_ID [--by NAME]  [--data-dir …]
    metersync manager update [--check | --install] --feed-url URL --trusted-root ROOT.json
                             [--data-dir DIR] [--version V --allow-downgrade]

Fleet intelligence (README "Alerts, notifications and forecasts"): `serve` evaluates alert
rules and delivers notifications in the background; e-mail needs `--smtp-relay HOST:PORT`
[--smtp-from ADDR] [--smtp-tls starttls|tls|none] [--smtp-user U --smtp-password-file F];
`--fleet-tick 60` is the period of the time-based rules; `--no-fleet` turns it all off.

Updates (chapter 16): `update` is manual mode; `serve --update-mode automatic --feed-url URL
--trusted-root ROOT.json [--update-interval 86400]` checks on a schedule instead. Update state
(TUF metadata cache, staged software, licences) lives in DIR/updates, DIR/licences, DIR/tuf.

The database is SQLite in DIR/manager.db (DIR: --data-dir, else $METERSYNC_HOME/manager, else
./var/manager) unless --database gives a URL (`postgresql+psycopg://user@host/db`).

Retention (README "Retention"): `serve` and `purge` take `--keep-readings DAYS`,
`--keep-collection-errors DAYS` and `--keep-reports DAYS` (at least 400); `serve` purges at
start and hourly, `purge` once, printing what it removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from metersync import logs
from metersync_manager import cli_retention, cli_tenancy

DEFAULT_BIND = "127.0.0.1:8470"
_T = TypeVar("_T")
_DURATION = re.compile(r"^(\d+)([smhd]?)$")


def default_data_dir() -> Path:
    home = os.environ.get("METERSYNC_HOME")
    return Path(home) / "manager" if home else Path("var") / "manager"


def database_url(args: argparse.Namespace) -> str:
    from metersync_manager.store import sqlite_url

    if args.database:
        return str(args.database)
    return sqlite_url(Path(args.data_dir) if args.data_dir else default_data_dir())


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 24h or 7d")
    unit = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _db_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="directory of the embedded SQLite database")
    p.add_argument("--database", help="database URL (overrides --data-dir)")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="manager_command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the manager (Hypercorn)")
    _db_options(serve)
    serve.add_argument("--bind", default=DEFAULT_BIND, help=f"host:port (default {DEFAULT_BIND})")
    serve.add_argument("--certfile", help="TLS certificate (PEM); HTTPS when given with --keyfile")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument(
        "--smtp-bind",
        help="also receive reports by mail (SMTP binding) on host:port; off by default",
    )
    serve.add_argument(
        "--rate-limit",
        type=int,
        default=600,
        help="requests per agent per minute before 429 (at least 60; default 600)",
    )
    serve.add_argument(
        "--enroll-failures",
        type=int,
        default=10,
        help="failed enrollments per client address per minute before 429 (at least 3; default 10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds the next part of a request body may take before 429 (MS-LIM-9; default 30)",
    )
    serve.add_argument(
        "--body-deadline",
        type=float,
        default=120.0,
        help="seconds a whole request body may take before 429 (MS-LIM-9; default 120)",
    )
    serve.add_argument("--bench-noop", action="store_true", help=argparse.SUPPRESS)
    _proxy_options(serve)
    _feed_options(serve)
    serve.add_argument(
        "--update-mode",
        choices=["manual", "automatic"],
        default="manual",
        help="automatic: check the feed on a schedule and install (default manual, MS-UPD-1)",
    )
    serve.add_argument(
        "--update-interval", type=float, default=86_400.0, help="seconds between checks"
    )
    serve.add_argument(
        "--no-channel-websocket",
        action="store_true",
        help="refuse WebSocket upgrades on /v1/channel: agents use long-poll (as behind a "
        "proxy that blocks WebSocket)",
    )
    serve.add_argument(
        "--channel-hold",
        type=float,
        default=30.0,
        help="seconds a channel long-poll is held when no request waits (at most 30)",
    )
    logs.add_options(serve)
    serve.add_argument(
        "--no-access-log", action="store_true", help="no access log line per HTTP request"
    )
    _fleet_options(serve)
    cli_retention.add_options(serve)
    serve.set_defaults(func=cmd_serve)
    cli_retention.register(sub, _db_options)

    update = sub.add_parser("update", help="check the update feed, or install from it")
    _feed_options(update)
    update.add_argument("--data-dir", help="where update state lives (default: the data dir)")
    mode = update.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only say what is available")
    mode.add_argument(
        "--install", action="store_true", help="install and make the new version current"
    )
    mode.add_argument("--rollback", action="store_true", help="make the previous version current")
    update.add_argument("--keep", type=int, default=3, help="versions kept (default 3)")
    update.add_argument("--version", help="install this software version")
    update.add_argument(
        "--allow-downgrade", action="store_true", help="allow an older --version (MS-UPD-17)"
    )
    update.set_defaults(func=cmd_update)

    token = sub.add_parser("token", help="enrollment tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = token_sub.add_parser("create", help="create a one-time enrollment token")
    _db_options(create)
    create.add_argument(
        "--expires",
        type=parse_duration,
        default=timedelta(hours=24),
        help="validity, e.g. 30m, 24h, 7d (default 24h)",
    )
    create.add_argument(
        "--agent",
        metavar="AGENT_ID",
        help="a re-enrollment token for this enrolled agent: key rotation (MS-SEC-8)",
    )
    create.add_argument(
        "--customer", default="default", help="the customer the enrolled agent belongs to"
    )
    create.add_argument("--site", help="the customer's site of the agent (created when new)")
    create.set_defaults(func=cmd_token_create)

    api_token = sub.add_parser("api-token", help="operator tokens for the /api/v1 API")
    api_sub = api_token.add_subparsers(dest="api_token_command", metavar="COMMAND", required=True)
    api_create = api_sub.add_parser("create", help="create an operator token (MS-HTTP-18)")
    _db_options(api_create)
    api_create.add_argument("--name", default="operator", help="who or what holds it")
    api_create.add_argument(
        "--role", default="dealer-admin", help="dealer-admin, dealer-staff or customer-viewer"
    )
    api_create.add_argument(
        "--customer", action="append", default=[], help="a customer of the scope (repeatable)"
    )
    api_create.set_defaults(func=cmd_api_token_create)
    api_revoke = api_sub.add_parser("revoke", help="revoke every operator token of a name")
    _db_options(api_revoke)
    api_revoke.add_argument("--name", required=True)
    api_revoke.set_defaults(func=cmd_api_token_revoke)

    user = sub.add_parser("user", help="console accounts (sign-in to the web console)")
    user_sub = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    u_create = user_sub.add_parser("create", help="create a console user; prints its password")
    _db_options(u_create)
    u_create.add_argument("username")
    u_create.add_argument(
        "--role", default="dealer-admin", help="dealer-admin, dealer-staff or customer-viewer"
    )
    u_create.add_argument(
        "--customer", action="append", default=[], help="a customer of the scope (repeatable)"
    )
    u_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    u_create.set_defaults(func=cmd_user)
    for name, what in (("reset", "give a user a new password"), ("disable", "disable a user")):
        u = user_sub.add_parser(name, help=f"{what}; their sessions end")
        _db_options(u)
        u.add_argument("username")
        if name == "reset":
            u.add_argument("--password-stdin", action="store_true")
        u.set_defaults(func=cmd_user)

    agent = sub.add_parser("agent", help="enrolled agents")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)
    revoke = agent_sub.add_parser("revoke", help="revoke an agent: its reports are refused (2008)")
    _db_options(revoke)
    revoke.add_argument("agent_id")
    revoke.set_defaults(func=cmd_agent_revoke)
    cli_tenancy.add_agent_move(agent_sub, _db_options)
    cli_tenancy.add_parsers(sub, _db_options)

    mail = sub.add_parser("mail", help="the SMTP binding")
    mail_sub = mail.add_subparsers(dest="mail_command", metavar="COMMAND", required=True)
    refusals = mail_sub.add_parser("refusals", help="list refused mails, newest first")
    _db_options(refusals)
    refusals.add_argument("--limit", type=int, default=50)
    refusals.set_defaults(func=cmd_mail_refusals)

    _register_alerts(sub)


def _fleet_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smtp-relay", metavar="HOST:PORT", help="the relay alert e-mail goes through")
    p.add_argument("--smtp-from", default="metersync@localhost", help="the sender of alert e-mail")
    p.add_argument(
        "--smtp-tls",
        choices=["starttls", "tls", "none"],
        default="starttls",
        help="starttls (default: required), tls (implicit, port 465) or none (loopback relays)",
    )
    p.add_argument("--smtp-user", help="SMTP AUTH user")
    p.add_argument("--smtp-password-file", help="a file holding the SMTP AUTH password")
    p.add_argument("--fleet-tick", type=float, default=60.0, help="seconds between time rules")
    p.add_argument("--no-fleet", action="store_true", help="no alert evaluation, no notifications")


def _fleet_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from metersync_manager.fleet.notify import NotifyConfig, SmtpRelay
    from metersync_manager.fleet.service import FleetConfig
    from metersync_manager.smtp_ingest import parse_bind

    relay = None
    if args.smtp_relay:
        host, port = parse_bind(args.smtp_relay)
        password = None
        if args.smtp_password_file:
            password = Path(args.smtp_password_file).read_text().strip()
        relay = SmtpRelay(host, port, args.smtp_from, args.smtp_tls, args.smtp_user, password)
    return FleetConfig(enabled=not args.no_fleet, tick=args.fleet_tick, notify=NotifyConfig(relay))


def _register_alerts(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="fleet alerts: list, acknowledge, resolve")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    ls = alerts_sub.add_parser("list", help="alerts, newest first")
    _db_options(ls)
    ls.add_argument("--state", choices=["open", "acknowledged", "resolved", "active"])
    ls.add_argument("--rule")
    ls.add_argument("--customer")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=cmd_alerts_list)
    for name, what in (("ack", "acknowledge"), ("resolve", "resolve")):
        p = alerts_sub.add_parser(name, help=f"{what} an alert")
        _db_options(p)
        p.add_argument("alert_id", type=int)
        p.add_argument("--by", default=os.environ.get("USER", "operator"), help="who acted")
        p.set_defaults(func=cmd_alerts_act, action=what)


def cmd_alerts_list(args: argparse.Namespace) -> int:
    import json

    from metersync_manager.fleet import alerts
    from metersync_manager.scope import ADMIN

    rows = _with_store(
        args,
        lambda s: alerts.list_alerts(
            s, ADMIN, state=args.state, rule=args.rule, customer=args.customer, limit=args.limit
        ),
    )
    for a in rows:
        if args.json:
            print(json.dumps(a, sort_keys=True))
            continue
        print(
            f"{a['alertId']:>6}  {a['state']:<12} {a['severity']:<8} {a['rule']:<18} "
            f"{a['subject']['kind']} {a['subject']['id']}  {a['title']}  (opened {a['openedAt']})"
        )
    if not rows:
        print("no alerts", file=sys.stderr)
    return 0


def cmd_alerts_act(args: argparse.Namespace) -> int:
    from metersync_manager import ingest
    from metersync_manager.fleet import alerts
    from metersync_manager.scope import DEALER_ADMIN, Scope

    scope = Scope(DEALER_ADMIN, operator=args.by)
    act = alerts.acknowledge if args.action == "acknowledge" else alerts.resolve
    try:
        found = _with_store(args, lambda s: act(s, scope, args.alert_id, ingest.utcnow()))
    except alerts.AlertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if found is None:
        print(f"no alert {args.alert_id}", file=sys.stderr)
        return 1
    print(f"alert {args.alert_id}: {found['state']}", file=sys.stderr)
    return 0


def _proxy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trusted-proxy",
        nargs="+",
        default=[],
        metavar="CIDR",
        help="reverse proxies whose X-Forwarded-For / Forwarded headers name the client "
        "(MS-OPS-1); other peers' headers are ignored",
    )
    p.add_argument(
        "--public-url",
        help="the base URL agents and operators use, e.g. https://dealer.example/metersync "
        "(OpenAPI server; its path is the default --root-path)",
    )
    p.add_argument(
        "--root-path",
        help="the path prefix the proxy serves the manager under, e.g. /metersync (MS-OPS-2)",
    )


def _proxy_settings(args: argparse.Namespace) -> tuple[list[Any], str]:
    """(trusted networks, root path) from the serve options; ValueError when malformed."""
    from urllib.parse import urlsplit

    from metersync_manager.proxy import parse_networks

    networks = parse_networks(args.trusted_proxy)
    if args.public_url:
        url = urlsplit(args.public_url)
        if url.scheme not in ("http", "https") or not url.netloc or url.query:
            raise ValueError(f"--public-url {args.public_url!r} is not an http(s) base URL")
    root = args.root_path
    if root is None:
        root = urlsplit(args.public_url).path if args.public_url else ""
    root = root.rstrip("/")
    if root and (not root.startswith("/") or "?" in root or "#" in root):
        raise ValueError(f"--root-path {root!r} must be a path like /metersync")
    return networks, root


def _feed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feed-url", help="base URL of the TUF update feed (https)")
    p.add_argument("--trusted-root", help="the feed's root.json, obtained out of band (MS-UPD-4)")


def _log() -> logging.Logger:
    return logging.getLogger("metersync.manager")


def _update_client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import metersync
    from metersync import updates

    if not args.feed_url or not args.trusted_root:
        raise updates.UpdateError("--feed-url and --trusted-root are needed for updates")
    try:
        root = Path(args.trusted_root).read_bytes()
    except OSError as exc:
        raise updates.UpdateError(f"cannot read the trusted root: {exc}") from None
    state = Path(args.data_dir) if args.data_dir else default_data_dir()
    return updates.UpdateClient(
        state, args.feed_url, root, product="manager", running_version=metersync.__version__
    )


def cmd_update(args: argparse.Namespace) -> int:
    from metersync import updates

    if args.allow_downgrade and args.version is None:
        print("--allow-downgrade needs --version", file=sys.stderr)
        return updates.EXIT_USAGE
    from metersync.releases import release_command

    state = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.rollback:
        return release_command(state, back=True)
    try:
        client = _update_client(args)
        out = client.run(
            install=not args.check, allow_downgrade=args.allow_downgrade, version=args.version
        )
    except updates.UpdateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return updates.EXIT_UNREACHABLE if "cannot be" in str(exc) else updates.EXIT_USAGE
    print(updates.describe(out, client, install=not args.check))
    if out.error or not args.install:
        return updates.EXIT_REFUSED if out.error else updates.EXIT_OK
    (state / "releases").mkdir(parents=True, exist_ok=True)
    return release_command(state, version=args.version, keep=args.keep)


async def _report_healthy(args: argparse.Namespace) -> None:
    """Once /healthz answers 200, tell the supervisor this version is healthy (MS-UPD-27)."""
    import ssl
    import urllib.request

    import metersync
    from metersync import releases

    url = f"{'https' if args.certfile else 'http'}://{args.bind}/healthz"
    ctx = ssl._create_unverified_context()  # our own loopback listener  # noqa: S323

    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as r:  # noqa: S310
                return r.status == 200
        except OSError:
            return False

    while not await asyncio.to_thread(ok):
        await asyncio.sleep(0.5)
    releases.mark_healthy(metersync.__version__)


async def _update_schedule(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Automatic mode: check every --update-interval plus up to 10 % (MS-UPD-14, MS-UPD-18)."""
    import random

    from metersync import updates

    rng = random.Random()
    delay = rng.uniform(0, 0.1 * args.update_interval)
    while True:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        try:
            out = await asyncio.to_thread(_update_client(args).run, install=True)
        except updates.UpdateError as exc:
            _log().warning("update check failed: %s", exc)
        else:
            if out.error:
                _log().warning("update refused: %s", out.error)
            for path in out.installed:
                _log().info("update installed %s", path)
            if any(not p.startswith("licences/") for p in out.installed):
                from metersync.releases import activate_staged

                state = Path(args.data_dir) if args.data_dir else default_data_dir()
                done = await asyncio.to_thread(activate_staged, state)
                if done:
                    _log().warning("%s is current: the supervisor restarts into it", done)
        delay = args.update_interval * (1 + rng.uniform(0, 0.1))


def _open_store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from metersync_manager.store import Store

    store = Store(database_url(args))
    store.migrate()
    return store


def _with_store(args: argparse.Namespace, action: Callable[[Any], _T]) -> _T:
    """Run one store call of an operator command on a migrated store, then close it."""
    store = _open_store(args)
    try:
        return action(store)
    finally:
        store.close()


def cmd_token_create(args: argparse.Namespace) -> int:
    from metersync_manager import ingest
    from metersync_manager.tenancy import TenancyError

    token = ingest.new_token()
    now = ingest.utcnow()
    expires = now + args.expires
    try:
        _with_store(
            args,
            lambda s: s.add_token(
                ingest.hash_token(token), expires, now, args.agent, args.customer, args.site
            ),
        )
    except TenancyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"one-time enrollment token, valid until {expires.isoformat()}", file=sys.stderr)
    return 0


def cmd_api_token_create(args: argparse.Namespace) -> int:
    from metersync_manager import ingest
    from metersync_manager.scope import Scope, ScopeError

    token = ingest.new_token()
    now = ingest.utcnow()
    try:
        scope = Scope(args.role, frozenset(args.customer), args.name)
        _with_store(
            args, lambda s: s.add_operator_token(ingest.hash_token(token), args.name, now, scope)
        )
    except ScopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"operator token {args.name!r}: send it as 'Authorization: Bearer …'", file=sys.stderr)
    return 0


def cmd_api_token_revoke(args: argparse.Namespace) -> int:
    from metersync_manager import ingest

    revoked = _with_store(args, lambda s: s.revoke_operator_tokens(args.name, ingest.utcnow()))
    print(f"revoked {revoked} operator token(s) named {args.name!r}", file=sys.stderr)
    return 0 if revoked else 1


def cmd_user(args: argparse.Namespace) -> int:
    from metersync_manager import ingest
    from metersync_manager.console.accounts import AccountError, Accounts, new_password
    from metersync_manager.scope import Scope, ScopeError

    now = ingest.utcnow()
    given = getattr(args, "password_stdin", False)
    password = sys.stdin.readline().rstrip("\n") if given else new_password()
    try:
        if args.user_command == "create":
            scope = Scope(args.role, frozenset(args.customer), args.username)
            _with_store(args, lambda s: Accounts(s).create(args.username, password, scope, now))
        elif args.user_command == "reset":
            _with_store(args, lambda s: Accounts(s).reset(args.username, password, now))
        else:
            _with_store(args, lambda s: Accounts(s).disable(args.username, now))
    except (AccountError, ScopeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.user_command != "disable" and not given:
        print(password)
    print(f"console user {args.username!r}: {args.user_command} done", file=sys.stderr)
    return 0


def cmd_agent_revoke(args: argparse.Namespace) -> int:
    from metersync_manager import ingest

    found = _with_store(args, lambda s: s.revoke(args.agent_id, ingest.utcnow()))
    if not found:
        print(f"no enrolled agent {args.agent_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.agent_id}", file=sys.stderr)
    return 0


def cmd_mail_refusals(args: argparse.Namespace) -> int:
    rows = _with_store(args, lambda s: s.mail_refusals(args.limit))
    for r in rows:
        print(
            f"{r['received_at']}  {r['code']} {r['name']}  agent={r['agent_id'] or '-'}  "
            f"from={r['mail_from'] or '-'}  subject={r['subject'] or '-'}\n    {r['message']}"
        )
    if not rows:
        print("no refused mail", file=sys.stderr)
    return 0


def _loopback(bind: str) -> bool:
    import ipaddress

    host = bind.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from metersync_manager.app import create_app

    if bool(args.certfile) != bool(args.keyfile):
        print("--certfile and --keyfile go together", file=sys.stderr)
        return 2
    if args.update_mode == "automatic" and not (args.feed_url and args.trusted_root):
        print("--update-mode automatic needs --feed-url and --trusted-root", file=sys.stderr)
        return 2
    if not args.certfile and not _loopback(args.bind):
        print("plain HTTP only on loopback: give --certfile and --keyfile (MS-HTTP-12)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.rate_limit < 60:
        print("--rate-limit must allow at least 60 requests per minute (MS-LIM-5)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.enroll_failures < 3:
        print("--enroll-failures must allow at least 3 failed enrollments per minute (MS-LIM-6)",
              file=sys.stderr)  # fmt: skip
        return 2
    if not 0 < args.body_timeout <= args.body_deadline:
        print("--body-timeout is more than 0 and at most --body-deadline", file=sys.stderr)
        return 2
    smtp_bind = None
    if args.smtp_bind:
        from metersync_manager.smtp_ingest import parse_bind

        try:
            smtp_bind = parse_bind(args.smtp_bind)
        except ValueError as exc:
            print(f"--smtp-bind: {exc}", file=sys.stderr)
            return 2
    if not 0 < args.channel_hold <= 30:
        print("--channel-hold is more than 0 and at most 30 s (MS-CH-4)", file=sys.stderr)
        return 2
    try:
        networks, root_path = _proxy_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        fleet = _fleet_config(args)
    except (ValueError, OSError) as exc:
        print(f"--smtp-relay / --smtp-password-file: {exc}", file=sys.stderr)
        return 2
    try:
        retain = cli_retention.policy(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = _open_store(args)
    app: Any = create_app(
        store,
        fleet=fleet,
        bench_noop=args.bench_noop,
        channel_websocket=not args.no_channel_websocket,
        channel_hold=args.channel_hold,
        rate_limit=args.rate_limit,
        enroll_failures=args.enroll_failures,
        public_url=args.public_url,
        body_timeout=args.body_timeout,
        body_deadline=args.body_deadline,
    )
    from metersync_manager.proxy import RootPath, TrustedProxies

    if root_path:
        app = RootPath(app, root_path)
    if networks:
        app = TrustedProxies(app, networks)
    config = Config()
    config.bind = [args.bind]
    config.certfile = args.certfile
    config.keyfile = args.keyfile
    logs.setup(args.log_level, args.log_format)
    config.accesslog = logs.access_logger(not args.no_access_log)
    config.access_log_format = logs.ACCESS_FORMAT
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 10

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        scheme = "https" if args.certfile else "http"
        _log().info("metersync manager on %s://%s (%s)", scheme, args.bind, store.dialect)
        updater = None
        if os.environ.get("METERSYNC_HEALTH_FILE"):  # started by the supervisor
            health_task = asyncio.create_task(_report_healthy(args))  # noqa: F841 (kept alive)
        if args.update_mode == "automatic":  # manual mode fetches nothing (MS-UPD-13)
            updater = asyncio.create_task(_update_schedule(args, stop))
        purger = None
        if retain.active:
            purger = asyncio.create_task(cli_retention.schedule(store, retain, stop))
        smtp = None
        if smtp_bind is not None:
            from metersync_manager.smtp_ingest import start_smtp

            smtp = await start_smtp(store, *smtp_bind)
            _log().info("metersync manager SMTP on %s", args.smtp_bind)
        try:
            await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        finally:
            if smtp is not None:
                smtp.close()
                await smtp.wait_closed()
            stop.set()
            for task in (updater, purger):
                if task is not None:
                    await task

    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0
