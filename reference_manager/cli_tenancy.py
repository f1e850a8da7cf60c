"""`metersync manager customer|site|device|contract-meter|meters …`: the dealer's commands.

Like metersync_manager.cli, the product modules are imported by the command that runs, so
`--help` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_parsers(sub: Any, db_options: Callable[[argparse.ArgumentParser], None]) -> None:
    customer = sub.add_parser("customer", help="customers of the dealer")
    c_sub = customer.add_subparsers(dest="customer_command", metavar="COMMAND", required=True)
    c_create = c_sub.add_parser("create", help="create a customer")
    db_options(c_create)
    c_create.add_argument("customer_id", help="a slug: lower-case letters, digits, hyphens")
    c_create.add_argument("--name", required=True, help="the customer's display name")
    c_create.set_defaults(func=cmd_customer_create)
    c_list = c_sub.add_parser("list", help="customers with their sites, agents and devices")
    db_options(c_list)
    c_list.set_defaults(func=cmd_customer_list)

    site = sub.add_parser("site", help="sites of a customer")
    s_sub = site.add_subparsers(dest="site_command", metavar="COMMAND", required=True)
    s_create = s_sub.add_parser("create", help="create a site")
    db_options(s_create)
    s_create.add_argument("name")
    s_create.add_argument("--customer", required=True)
    s_create.set_defaults(func=cmd_site_create)

    device = sub.add_parser("device", help="devices")
    d_sub = device.add_subparsers(dest="device_command", metavar="COMMAND", required=True)
    d_move = d_sub.add_parser("move", help="move a device to a customer and site (history kept)")
    db_options(d_move)
    d_move.add_argument("device_key")
    d_move.add_argument("--customer", required=True)
    d_move.add_argument("--site")
    d_move.set_defaults(func=cmd_move, subject="device")

    meter = sub.add_parser("contract-meter", help="how a customer's billed meters are composed")
    m_sub = meter.add_subparsers(dest="meter_command", metavar="COMMAND", required=True)
    m_set = m_sub.add_parser("set", help='define one, e.g. mono "print-mono + copy-mono"')
    db_options(m_set)
    m_set.add_argument("name")
    m_set.add_argument("terms", help="[WEIGHT*]KIND[@SOURCE] joined by +, e.g. 2*large-format")
    m_set.add_argument("--customer", default="*", help="a customer id, or * for every customer")
    m_set.set_defaults(func=cmd_contract_set)
    m_list = m_sub.add_parser("list", help="the contract meters of a customer")
    db_options(m_list)
    m_list.add_argument("--customer", default="*")
    m_list.set_defaults(func=cmd_contract_list)

    meters = sub.add_parser("meters", help="the billing export")
    e_sub = meters.add_subparsers(dest="meters_command", metavar="COMMAND", required=True)
    export = e_sub.add_parser("export", help="meters of a period (from, to] as CSV or JSON")
    db_options(export)
    export.add_argument("--from", dest="start", required=True, type=_time, help="ISO 8601 time")
    export.add_argument("--to", dest="end", required=True, type=_time)
    export.add_argument("--customer", help="one customer (default: every customer)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", type=Path, help="write here (default: standard output)")
    export.set_defaults(func=cmd_meters_export)


def add_agent_move(agent_sub: Any, db_options: Callable[[argparse.ArgumentParser], None]) -> None:
    move = agent_sub.add_parser("move", help="move an agent and the devices it owns")
    db_options(move)
    move.add_argument("agent_id")
    move.add_argument("--customer", required=True)
    move.add_argument("--site")
    move.set_defaults(func=cmd_move, subject="agent")


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _run(args: argparse.Namespace, action: Callable[[Any], Any]) -> Any:
    from metersync_manager.cli import _with_store

    return _with_store(args, action)


def _errors() -> tuple[type[Exception], ...]:
    from metersync_manager.contract import ContractError
    from metersync_manager.tenancy import TenancyError

    return (ContractError, TenancyError)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def cmd_customer_create(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        _run(args, lambda s: s.create_customer(args.customer_id, args.name, now))
    except _errors() as exc:
        return _fail(exc)
    print(f"customer {args.customer_id} ({args.name}) created")
    return 0


def cmd_customer_list(args: argparse.Namespace) -> int:
    for c in _run(args, lambda s: s.customers()):
        sites = ", ".join(x["name"] for x in c["sites"]) or "no sites"
        print(f"{c['customerId']:<24} {c['agents']:>5} agents {c['devices']:>7} devices  "
              f"{c['name']} ({sites})")  # fmt: skip
    return 0


def cmd_site_create(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        site_id = _run(args, lambda s: s.create_site(args.customer, args.name, now))
    except _errors() as exc:
        return _fail(exc)
    print(f"site {args.name!r} of {args.customer}: id {site_id}")
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    subject_id = args.device_key if args.subject == "device" else args.agent_id
    try:
        moved = _run(
            args, lambda s: s.move(args.subject, subject_id, args.customer, args.site, now, "cli")
        )
    except _errors() as exc:
        return _fail(exc)
    print(f"{args.subject} {subject_id} moved to {args.customer} ({moved} device(s))")
    return 0


def cmd_contract_set(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        _run(args, lambda s: s.define_contract_meter(args.customer, args.name, args.terms, now))
    except _errors() as exc:
        return _fail(exc)
    print(f"contract meter {args.name} of {args.customer}: {args.terms}")
    return 0


def cmd_contract_list(args: argparse.Namespace) -> int:
    for x in _run(args, lambda s: s.contract_meters(args.customer)):
        print(f"{x['name']:<20} {x['terms']}")
    return 0


def cmd_meters_export(args: argparse.Namespace) -> int:
    from metersync_manager import billing
    from metersync_manager.extract import utc_naive

    if args.end <= args.start:
        return _fail(ValueError("--to must be after --from"))
    period = billing.Period(utc_naive(args.start), utc_naive(args.end), args.customer)
    out = args.out.open("w", newline="", encoding="utf-8") if args.out else sys.stdout
    started, n_lines, devices = time.monotonic(), 0, set()

    def write(store: Any) -> None:
        nonlocal n_lines
        writer = csv.writer(out, lineterminator="\r\n")
        if args.format == "csv":
            writer.writerow(billing.CSV_COLUMNS)
        else:
            out.write('{"lines": [')
        for page in store.meter_lines(period):
            for x in page:
                if args.format == "csv":
                    writer.writerow(billing.csv_row(x))
                else:
                    out.write(("" if n_lines == 0 else ", ") + json.dumps(x))
                n_lines += 1
                devices.add(x["deviceKey"])
            print(f"\r  {len(devices)} devices, {n_lines} lines", end="", file=sys.stderr)
        if args.format == "json":
            out.write("]}\n")

    try:
        _run(args, write)
    finally:
        if args.out:
            out.close()
    print(
        f"\r  {len(devices)} devices, {n_lines} lines, {time.monotonic() - started:.1f} s"
        + (f" → {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0
