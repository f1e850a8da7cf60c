"""The agent's updates: `metersync agent update` (manual mode) and the automatic schedule.

Both run the same workflow (metersync/updates.py): TUF refresh, pick what applies to an agent
on this platform, verify, install licences and stage software. In `manual` mode nothing is
fetched unless the operator runs the command (MS-UPD-13); in `automatic` mode the service
checks every checkInterval plus a random delay of up to 10 % (MS-UPD-14).

    metersync agent update [--check | --install | --rollback] [--version V --allow-downgrade]

With a releases/ directory in the state dir (the supervisor's layout, metersync/releases.py),
--install and the automatic schedule also build the staged version into releases/<version>/
and make it current; the supervisor then restarts into it. --rollback makes the previous
version current again.

Exit codes: 0 installed or nothing to do; 1 refused (the 6001–6006 code is printed);
2 configuration error (no feed URL, no trusted root); 3 the feed could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from pathlib import Path
from typing import Any

from metersync import releases, updates
from metersync_agent import enrollment
from metersync_agent.config import Settings

log = logging.getLogger("metersync.agent.updates")

JITTER_FRACTION = 0.10  # MS-UPD-14
_healthy_reported = False


def report_healthy() -> None:
    """Tell the supervisor this version is healthy (once, after the first poll cycle)."""
    global _healthy_reported
    if not _healthy_reported:
        releases.mark_healthy(enrollment.SOFTWARE.version)
        _healthy_reported = True


def client_for(settings: Settings, state_dir: Path, agent_id: str) -> updates.UpdateClient:
    """The update client for this agent; UpdateError when the feed is not configured."""
    if not settings.update_feed_url:
        raise updates.UpdateError("no updates/feedUrl in the provisioning: there is no feed")
    if not settings.update_trusted_root:
        raise updates.UpdateError(
            "no updates/trustedRoot in the provisioning: the feed's root.json must be "
            "provisioned out of band (MS-UPD-4)"
        )
    return updates.UpdateClient(
        state_dir,
        settings.update_feed_url,
        settings.update_trusted_root.encode("utf-8"),
        product="agent",
        running_version=enrollment.SOFTWARE.version,
        agent_id=agent_id,
    )


def licence_for_report(state_dir: Path, agent_id: str) -> Any:
    """The LicenceState for agentStatus/licence (MS-UPD-20)."""
    return updates.licence_model(updates.licence_state(state_dir, "agent", agent_id))


def next_check_delay(interval: float, rng: random.Random) -> float:
    return interval + rng.uniform(0, JITTER_FRACTION * interval)


async def schedule(
    settings: Settings, state_dir: Path, agent_id: str, stop: asyncio.Event, rng: random.Random
) -> None:
    """Automatic mode: check and install every checkInterval (+ up to 10 %), until stopped.

    A failed check keeps everything as it is and is tried again at the next one (MS-UPD-18)."""
    interval = settings.update_check_interval
    delay = rng.uniform(0, JITTER_FRACTION * interval)  # the first check, spread over a fleet
    while True:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        try:
            client = client_for(settings, state_dir, agent_id)
            out = await asyncio.to_thread(client.run, install=True)
        except updates.UpdateError as exc:
            log.warning("update check failed: %s; next check in about %.0f s", exc, interval)
        else:
            if out.error:
                log.error("update refused: %s; keeping what is installed", out.error)
            for path in out.installed:
                log.info("update installed %s", path)
            if any(not p.startswith("licences/") for p in out.installed):
                try:
                    done = await asyncio.to_thread(releases.activate_staged, state_dir)
                except releases.ReleaseError as exc:
                    log.error("the staged software cannot be installed: %s", exc)
                else:
                    if done:
                        log.warning("%s is current: the supervisor restarts into it", done)
                    else:
                        log.warning("new software is staged: restart the agent to activate it")
        delay = next_check_delay(interval, rng)


def _cmd_update(args: argparse.Namespace) -> int:
    from metersync_agent.service import _load, _setup_logging, _state_dir

    _setup_logging(args.log_level)
    settings = _load(args)
    if settings is None:
        return updates.EXIT_USAGE
    if args.version is None and args.allow_downgrade:
        print("error: --allow-downgrade needs --version", file=sys.stderr)
        return updates.EXIT_USAGE
    state_dir = _state_dir(args)
    if args.rollback:
        return releases.release_command(state_dir, back=True)
    identity = enrollment.load_or_create_identity(state_dir)
    try:
        client = client_for(settings, state_dir, identity.agent_id)
        out = client.run(
            install=not args.check, allow_downgrade=args.allow_downgrade, version=args.version
        )
    except updates.UpdateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        unreachable = "cannot be" in str(exc)
        return updates.EXIT_UNREACHABLE if unreachable else updates.EXIT_USAGE
    print(updates.describe(out, client, install=not args.check))
    if out.error:
        return updates.EXIT_REFUSED
    if args.install:
        releases.releases_dir(state_dir).mkdir(parents=True, exist_ok=True)
        return releases.release_command(state_dir, version=args.version, keep=args.keep)
    return updates.EXIT_OK


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "update",
        parents=parents,
        help="check the update feed, or install software and licences from it",
        epilog=__doc__.split("Exit codes:")[1].join(["exit codes:", ""]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only say what is available")
    mode.add_argument(
        "--install", action="store_true", help="install and make the new version current"
    )
    mode.add_argument("--rollback", action="store_true", help="make the previous version current")
    p.add_argument("--keep", type=int, default=releases.KEEP, help="versions kept (default 3)")
    p.add_argument("--version", help="install this software version")
    p.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="allow --version to be older than what is installed (MS-UPD-17)",
    )
    p.set_defaults(func=_cmd_update)
