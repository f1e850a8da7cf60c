"""The supervisor: a thin launcher that owns the switch between versions (MS-UPD-27).

    python -m metersync.supervisor --state-dir DIR [--window 120] -- agent run --config P.xml

It runs on the base install and never imports the product code it supervises (only the stdlib
and metersync/releases.py, itself stdlib only), so a broken release cannot break it. It starts
`releases/current` (or the base install when no release is current) as
`python -m metersync.cli ARGS…`, watches the `current` symlink, and on a change stops the child
with SIGTERM (the agent closes its outbox, MS-UPD-26) and starts the new version. A version not
yet seen healthy must write releases/health.json (its pid) within the window; when it exits
first or the window passes, the supervisor quarantines it, makes the previous version current
again and records error 6007 in releases/status.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from metersync import releases as rel

log = logging.getLogger("metersync.supervisor")

WINDOW = 120.0  # seconds for a new version to report healthy (spec 16.1.1)
POLL = 1.0
RESTART_DELAY = 2.0
STOP_GRACE = 30.0
BASE = "base"  # the version name of the base install in status.json


class Supervisor:
    def __init__(self, state_dir: Path, args: list[str], window: float, poll: float) -> None:
        self.state_dir, self.args, self.window, self.poll = state_dir, args, window, poll
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    @property
    def status_path(self) -> Path:
        return rel.releases_dir(self.state_dir) / rel.STATUS

    def _status(self, **fields: object) -> None:
        status = rel.read_json(self.status_path) or {}
        status.update(fields, at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat())
        rel.write_json(self.status_path, status)

    def _start(self, version: str) -> subprocess.Popen[bytes]:
        health = rel.releases_dir(self.state_dir) / rel.HEALTH
        health.unlink(missing_ok=True)
        env = dict(os.environ, METERSYNC_HEALTH_FILE=str(health), METERSYNC_RELEASE=version)
        py = rel.python_for(self.state_dir) if version != BASE else sys.executable
        log.info("starting %s (%s)", version, py)
        return subprocess.Popen([py, "-m", "metersync.cli", *self.args], env=env)

    def _stop_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        self.child.send_signal(signal.SIGTERM)
        try:
            self.child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def _healthy(self, child: subprocess.Popen[bytes]) -> str | None:
        """None once the child wrote health.json, else why it failed its check."""
        deadline = time.monotonic() + self.window
        health = rel.releases_dir(self.state_dir) / rel.HEALTH
        while time.monotonic() < deadline and not self.stopping:
            if (rel.read_json(health) or {}).get("pid") == child.pid:
                return None
            if child.poll() is not None:
                return f"exited with {child.returncode} before it was healthy"
            time.sleep(min(self.poll, 0.2))
        return None if self.stopping else f"not healthy within {self.window:.0f} s"

    def _roll_back(self, version: str, reason: str) -> None:
        self._stop_child()
        rel.quarantine(self.state_dir, version, reason)
        previous = rel.link_target(self.state_dir, rel.PREVIOUS)
        rel.set_link(self.state_dir, rel.CURRENT, previous)
        rel.set_link(self.state_dir, rel.PREVIOUS, None)
        back = previous or BASE
        log.error("error 6007: %s %s; rolled back to %s, %s quarantined",
                  version, reason, back, version)  # fmt: skip
        self._status(code=6007, failed=version, reason=reason, running=back)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        while not self.stopping:
            version = rel.link_target(self.state_dir, rel.CURRENT) or BASE
            self.child = self._start(version)
            if version != (rel.read_json(self.status_path) or {}).get("healthy"):
                failure = self._healthy(self.child)
                if failure and version != BASE:
                    self._roll_back(version, failure)
                    continue
                if failure is None and not self.stopping:
                    self._status(healthy=version, running=version)
            self._watch(version)
        self._stop_child()
        return 0

    def _watch(self, version: str) -> None:
        """Until the child exits (restart it) or `current` changes (switch)."""
        assert self.child is not None
        while not self.stopping:
            if self.child.poll() is not None:
                log.warning("%s exited with %s; restarting", version, self.child.returncode)
                time.sleep(RESTART_DELAY)
                return
            if (rel.link_target(self.state_dir, rel.CURRENT) or BASE) != version:
                log.info("current changed from %s: switching", version)
                self._stop_child()
                return
            time.sleep(self.poll)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metersync.supervisor", description=__doc__)
    p.add_argument("--state-dir", required=True, help="the agent's state or manager's data dir")
    p.add_argument("--window", type=float, default=WINDOW, help="seconds to become healthy")
    p.add_argument("--poll", type=float, default=POLL, help="seconds between looks at current")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then the metersync command")
    ns = p.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if not args:
        p.error("give the command to supervise after --, e.g. -- agent run --config P.xml")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(message)s")
    return Supervisor(Path(ns.state_dir), args, ns.window, ns.poll).run()


if __name__ == "__main__":
    sys.exit(main())
