"""`metersync agent …` subcommands: poll one device, discover printers in address ranges.

Each subcommand is one `_add_<name>(sub)` function that sets `func`; add new ones to
`SUBCOMMANDS` (an `agent run` can live beside these without touching them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable

__all__ = ["EXIT_AUTH", "EXIT_OK", "EXIT_PARTIAL", "EXIT_UNREACHABLE", "EXIT_USAGE", "register"]

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH, EXIT_PARTIAL = 0, 2, 3, 4, 5

EXIT_CODES = """exit codes:
  0  ok: everything the profiles ask for was read
  2  usage error (bad arguments, bad credentials spec)
  3  unreachable: the device did not answer
  4  authentication or authorisation failure (SNMPv3 user, keys or protocols rejected,
     or the device refused access: authorizationError, noAccess)
  5  partial read: a snapshot was printed, but it carries collection errors"""


def _credential_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SNMP credentials")
    g.add_argument(
        "--community",
        action="append",
        help="v1/v2c community; repeat it to try several in order (default: public)",
    )
    g.add_argument("--snmp-version", choices=["1", "2c", "3"], help="default: 2c, or 3 with --user")
    g.add_argument("--user", help="SNMPv3 user name")
    g.add_argument("--auth-protocol", help="MD5, SHA, SHA224, SHA256, SHA384, SHA512")
    g.add_argument("--auth-key", help="SNMPv3 authentication passphrase")
    g.add_argument("--priv-protocol", help="DES, 3DES, AES, AES192, AES256")
    g.add_argument("--priv-key", help="SNMPv3 privacy passphrase")
    g.add_argument("--context", default="", help="SNMPv3 context name")
    t = p.add_argument_group("timing")
    t.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default 2)")
    t.add_argument("--retries", type=int, default=1, help="retries per request (default 1)")
    t.add_argument("--budget", type=float, default=30.0, help="seconds per device (default 30)")


def _credentials(args: argparse.Namespace):
    from .snmp import Credential

    """The credentials to try, in order (the first that answers is kept per device): the
    SNMPv3 user when given, then every --community (public when none is given and no user)."""
    version = args.snmp_version or ("3" if args.user else "2c")
    creds = []
    if version == "3":
        creds.append(
            Credential(
                "3",
                user=args.user or "",
                auth_protocol=args.auth_protocol,
                auth_key=args.auth_key,
                priv_protocol=args.priv_protocol,
                priv_key=args.priv_key,
                context=args.context,
            )
        )
    communities = args.community or ([] if creds else ["public"])
    v1v2 = version if version != "3" else "2c"
    return creds + [Credential(v1v2, community=c) for c in dict.fromkeys(communities)]


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 161
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 161


def _poll(args: argparse.Namespace) -> int:
    from .poller import poll_device, snapshot_json, snapshot_xml, validate_snapshot_xml
    from .profiles import ProfileError, load_profiles
    from .snmp import SnmpClient

    try:
        host, port = _host_port(args.target)
        creds = _credentials(args)
        profiles = load_profiles(args.profiles_dir or ())
    except (ValueError, ProfileError) as exc:
        print(f"metersync agent poll: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def run():
        client = SnmpClient(timeout=args.timeout, retries=args.retries)
        try:
            return await poll_device(client, host, port, creds, profiles, args.budget)
        finally:
            client.close()

    snap = asyncio.run(run())
    if args.format == "json":
        print(json.dumps(snapshot_json(snap), indent=2, ensure_ascii=False))
    else:
        xml = snapshot_xml(snap)
        errors = validate_snapshot_xml(xml)
        sys.stdout.write(xml.decode("utf-8"))
        if errors:  # a bug of ours, never the device's: say so loudly
            print(
                "snapshot does not validate against device.xsd:",
                *errors,
                sep="\n  ",
                file=sys.stderr,
            )
            return 1
    codes = {e.code.value for e in snap.collection_error}
    read_anything = bool(snap.counter or snap.supply or snap.identity.sys_descr)
    for e in snap.collection_error:
        if e.code.value in ("auth-failure", "unreachable") and not read_anything:
            print(f"metersync agent poll: {e.code.value}: {e.message}", file=sys.stderr)
    if read_anything and not (snap.counter or snap.supply or snap.input_tray or snap.alert):
        print(
            f"metersync agent poll: {args.target} answers SNMP but shows no Printer-MIB data "
            "(no counters, supplies, trays or alerts): it is probably not a printer",
            file=sys.stderr,
        )
    if "auth-failure" in codes and not read_anything:
        return EXIT_AUTH
    if codes & {"unreachable", "timeout"} and not read_anything:
        return EXIT_UNREACHABLE
    return EXIT_PARTIAL if codes else EXIT_OK


def _discover(args: argparse.Namespace) -> int:
    from .discovery import DiscoveryProgress, describe, discover
    from .snmp import SnmpClient, SnmpError
    from .targets import TargetError, TargetSet

    try:
        targets = TargetSet.parse(args.ranges, args.exclude or (), args.port)
        creds = _credentials(args)
    except (TargetError, ValueError) as exc:
        print(f"metersync agent discover: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problems: list[tuple[str, int, SnmpError]] = []
    progress = DiscoveryProgress()
    total = f"{'≤' if args.exclude else ''}{targets.upper_bound()}"
    t0 = time.monotonic()

    def report(final: bool = False) -> None:
        label = "done" if final else "progress"
        line = progress.line(total, time.monotonic() - t0)
        print(f"metersync agent discover: {label}: {line}", file=sys.stderr, flush=True)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(args.progress_every)
            report()

    async def run():
        client = SnmpClient(timeout=args.timeout, retries=args.retries)
        tick = asyncio.create_task(ticker()) if args.progress_every > 0 else None
        try:
            return await discover(
                client, targets, creds, budget=args.budget, problems=problems, progress=progress
            )
        finally:
            if tick is not None:
                tick.cancel()
            client.close()

    found = asyncio.run(run())
    for dev in found:
        print(describe(dev))
    report(final=True)
    for host, port, exc in problems:
        print(f"{host}:{port} {exc.code}: {exc.message}", file=sys.stderr)
    if not found and problems and all(e.code == "auth-failure" for _, _, e in problems):
        return EXIT_AUTH
    return EXIT_OK if found or not problems else EXIT_PARTIAL


def _add_poll(sub) -> None:
    p = sub.add_parser(
        "poll",
        help="read one device and print its snapshot",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="HOST[:PORT]", help="address or name, port 161 by default")
    p.add_argument("--format", choices=["xml", "json"], default="xml")
    p.add_argument("--profiles-dir", action="append", help="extra profile TOML directory")
    _credential_args(p)
    p.set_defaults(func=_poll)


def _add_discover(sub) -> None:
    p = sub.add_parser(
        "discover",
        help="list printers in address ranges",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ranges", nargs="+", metavar="RANGE", help="10.0.0.7, 10.0.0.1-50, 10.0.0.0/24")
    p.add_argument("--exclude", action="append", metavar="RANGE")
    p.add_argument("--port", type=int, default=161, help="default port (default 161)")
    p.add_argument(
        "--progress-every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="progress line on stderr this often (default 2; 0: only the summary)",
    )
    _credential_args(p)
    p.set_defaults(func=_discover)


# The long-lived service's commands (service.py `register_service_commands`): listed here so
# that `agent --help` and `agent poll` never import the service; built when one is chosen.
SERVICE_COMMANDS = {
    "provision": "check a Provisioning document and store it in the state dir (mode 0600)",
    "run": "run the agent: discover, poll, store, deliver",
    "enroll": "enroll with the manager once, then exit",
    "update": "check the update feed, or install software and licences from it",
}


class _LazyServiceParser(argparse.ArgumentParser):
    """A service command's parser that imports service.py only when it parses."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        from .service import register_service_commands

        name = self.prog.rsplit(" ", 1)[-1]
        real = argparse.ArgumentParser(prog=self.prog.rsplit(" ", 1)[0])
        choices = real.add_subparsers()
        register_service_commands(choices)
        return choices.choices[name].parse_known_args(args, namespace)


def _add_service(sub) -> None:
    """`provision`, `run`, `enroll`, `update`: the long-lived service, defined in service.py."""
    default, sub._parser_class = sub._parser_class, _LazyServiceParser
    try:
        for name, help_text in SERVICE_COMMANDS.items():
            sub.add_parser(name, help=help_text, add_help=False)
    finally:
        sub._parser_class = default


def _add_record(sub) -> None:
    from .recorder import add_record

    add_record(sub)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_poll,
    _add_discover,
    _add_service,
    _add_record,
]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the agent's subcommands to `metersync agent`."""
    parser.epilog = "`metersync agent COMMAND --help` gives each command's options and exit codes."
    sub = parser.add_subparsers(dest="agent_command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
