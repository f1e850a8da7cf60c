"""Releases side by side: build, switch, prune and roll back (spec 16.1.1, MS-UPD-24…28).

A staged software version (updates/<version>/, verified by metersync/updates.py) becomes a
virtual environment of its own, releases/<version>/, built from its wheel with no index and no
dependency resolution; the dependencies come from the base install through a .pth line. The
`current` and `previous` symlinks each change in one rename. The supervisor
(metersync/supervisor.py) starts whatever `current` names and rolls back a version that fails
its health check. Stdlib only, like the supervisor, which reads this module's layout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

RELEASES_DIR, UPDATES_DIR = "releases", "updates"
CURRENT, PREVIOUS = "current", "previous"
QUARANTINE, HEALTH, STATUS = "quarantine.json", "health.json", "status.json"
BASE_PTH = "_metersync_base.pth"  # names the base install's site-packages
KEEP = 3  # versions kept (MS-UPD-25)
EXIT_OK, EXIT_REFUSED = 0, 1  # as metersync/updates.py


class ReleaseError(Exception):
    """A release cannot be built, activated or rolled back; the message says why."""


def _key(version: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


def releases_dir(state_dir: Path) -> Path:
    return Path(state_dir) / RELEASES_DIR


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def link_target(state_dir: Path, name: str) -> str | None:
    """The version a symlink (current / previous) names, or None."""
    try:
        return os.readlink(releases_dir(state_dir) / name)
    except OSError:
        return None


def set_link(state_dir: Path, name: str, version: str | None) -> None:
    """Point `name` at `version` in one rename (or remove it for None)."""
    base = releases_dir(state_dir)
    if version is None:
        (base / name).unlink(missing_ok=True)
        return
    tmp = base / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, base / name)


def built_versions(state_dir: Path) -> list[str]:
    base = releases_dir(state_dir)
    if not base.is_dir():
        return []
    found = [
        d.name for d in base.iterdir() if (d / "release.json").is_file() and not d.is_symlink()
    ]
    return sorted(found, key=_key)


def quarantined(state_dir: Path) -> dict[str, str]:
    return read_json(releases_dir(state_dir) / QUARANTINE) or {}


def quarantine(state_dir: Path, version: str, reason: str) -> None:
    q = quarantined(state_dir)
    q[version] = reason
    write_json(releases_dir(state_dir) / QUARANTINE, q)


def base_site_paths() -> list[str]:
    """Where the dependencies live: the base install's site-packages (also from a release)."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    pth = purelib / BASE_PTH
    if pth.is_file():
        return [line for line in pth.read_text().splitlines() if line.strip()]
    return [str(purelib)]


def _wheel(state_dir: Path, version: str) -> tuple[Path, dict[str, Any]]:
    staged = Path(state_dir) / UPDATES_DIR / version
    record = read_json(staged / "installed.json")
    wheels = sorted(staged.glob("*.whl"))
    if not record or not wheels:
        raise ReleaseError(f"{version} is not staged as a verified wheel in {staged}")
    wheel = wheels[0]
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != record.get("sha256"):
        raise ReleaseError(f"the staged wheel {wheel} differs from what was verified")
    return wheel, record


def build(state_dir: Path, version: str) -> Path:
    """releases/<version>/ from the staged, verified wheel (MS-UPD-24); all or nothing."""
    wheel, record = _wheel(state_dir, version)
    base = releases_dir(state_dir)
    base.mkdir(parents=True, exist_ok=True)
    final = base / version
    if (final / "release.json").is_file():
        return final
    work = Path(tempfile.mkdtemp(prefix=f".build-{version}-", dir=base))
    try:
        _run([sys.executable, "-m", "venv", "--without-pip", str(work)])
        purelib = _venv_purelib(work)
        (purelib / BASE_PTH).write_text("\n".join(base_site_paths()) + "\n")
        pip = [sys.executable, "-m", "pip", "--python", str(work / "bin" / "python")]
        _run([*pip, "install", "-q", "--no-index", "--no-deps", str(wheel)])
        when = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        write_json(work / "release.json", {"version": version, "sha256": record["sha256"],
                                           "builtAt": when})  # fmt: skip
        shutil.rmtree(final, ignore_errors=True)
        os.rename(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _venv_purelib(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise ReleaseError(f"no site-packages in the new environment {venv}")
    return found[0]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"{' '.join(cmd[:4])} … failed: {done.stderr.strip()[-500:]}")


def activate(state_dir: Path, version: str, keep: int = KEEP) -> None:
    """Make `version` current in one rename; the one it replaces becomes previous (MS-UPD-25)."""
    if not (releases_dir(state_dir) / version / "release.json").is_file():
        raise ReleaseError(f"{version} is not built under {releases_dir(state_dir)}")
    old = link_target(state_dir, CURRENT)
    if old == version:
        return
    if old is not None:
        set_link(state_dir, PREVIOUS, old)
    set_link(state_dir, CURRENT, version)
    prune(state_dir, keep)


def rollback(state_dir: Path) -> str:
    """Current ← previous; the version left becomes previous. Returns the version now current."""
    prev, cur = link_target(state_dir, PREVIOUS), link_target(state_dir, CURRENT)
    if prev is None:
        raise ReleaseError("there is no previous version to roll back to")
    set_link(state_dir, CURRENT, prev)
    set_link(state_dir, PREVIOUS, cur)
    return prev


def prune(state_dir: Path, keep: int = KEEP) -> list[str]:
    """Remove the oldest versions beyond `keep`, never current nor previous."""
    pinned = {link_target(state_dir, CURRENT), link_target(state_dir, PREVIOUS)}
    versions = built_versions(state_dir)
    removed: list[str] = []
    for v in versions[: max(0, len(versions) - keep)]:
        if v not in pinned:
            shutil.rmtree(releases_dir(state_dir) / v, ignore_errors=True)
            removed.append(v)
    return removed


def install_staged(state_dir: Path, version: str | None = None, keep: int = KEEP) -> str | None:
    """Build and activate `version`, or the newest staged one not quarantined and not current.

    An operator naming a quarantined version by its number takes it out of quarantine."""
    from_staged = _staged(state_dir)
    q = quarantined(state_dir)
    if version is None:
        current = link_target(state_dir, CURRENT)
        fresh = [v for v in from_staged if v not in q and v != current]
        if not fresh or (current and _key(fresh[-1]) < _key(current)):
            return None
        version = fresh[-1]
    elif version in q:
        del q[version]
        write_json(releases_dir(state_dir) / QUARANTINE, q)
    build(state_dir, version)
    activate(state_dir, version, keep)
    return version


def _staged(state_dir: Path) -> list[str]:
    base = Path(state_dir) / UPDATES_DIR
    if not base.is_dir():
        return []
    found = [d.name for d in base.iterdir() if (d / "installed.json").is_file()]
    return sorted(found, key=_key)


def python_for(state_dir: Path) -> str:
    """The interpreter of the current version, or the base one when no release is current."""
    cur = link_target(state_dir, CURRENT)  # the version's own path: a later switch leaves it be
    py = releases_dir(state_dir) / (cur or CURRENT) / "bin" / "python"
    return str(py) if cur is not None and py.exists() else sys.executable


def mark_healthy(version: str) -> None:
    """Called by the supervised version once healthy: writes METERSYNC_HEALTH_FILE if set."""
    path = os.environ.get("METERSYNC_HEALTH_FILE")
    if path:
        write_json(Path(path), {"pid": os.getpid(), "version": version})


def activate_staged(state_dir: Path, version: str | None = None) -> str | None:
    """Build and make current the newest staged version, when the supervisor's layout is used.

    Returns the version activated, or None (no releases/ directory, or nothing newer)."""
    if not releases_dir(state_dir).is_dir():
        return None
    return install_staged(state_dir, version)


def release_command(
    state_dir: Path, *, back: bool = False, version: str | None = None, keep: int = KEEP
) -> int:
    """--install's activation or --rollback, for agent and manager alike (MS-UPD-28)."""
    try:
        if back:
            print(f"{rollback(state_dir)} is current again")
        else:
            done = install_staged(state_dir, version, keep)
            print(f"{done} is current" if done else "no staged version newer than the current one")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK
