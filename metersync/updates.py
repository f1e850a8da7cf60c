"""The update client of agent and manager: software and licences from a TUF feed (chapter 16).

The TUF client workflow (MS-UPD-3…10) is `tuf.ngclient.Updater`, the reference implementation
of The Update Framework; this module adds MeterSync's part: which targets apply (kind, product,
platform, version: MS-UPD-12, MS-UPD-17), licence checks (MS-UPD-20, MS-UPD-21), staging, and
the mapping of every refusal to its error code (6001–6006). Layout under the state dir:

    tuf/                      the trusted metadata cache (root history, timestamp, snapshot …)
    updates/<version>/        a staged software version, with installed.json
    updates/status.json       the last check: when, result, error code (MS-UPD-18)
    licences/<licenceId>.xml  installed licences (verified targets only)

"Installing" software here means: verified, then staged into updates/<version>/ in one rename;
the new version becomes active when the service is restarted by its supervisor. A failed
installation leaves nothing behind (MS-UPD-15).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from metersync.errors import ProtocolError
from metersync.releases import read_json, write_json

log = logging.getLogger("metersync.updates")

PLATFORM = "python"  # the reference is pure Python; targets for "any" platform match too
EXPIRING_DAYS = 30
TUF_DIR, UPDATES_DIR, LICENCES_DIR = "tuf", "updates", "licences"
STATUS_FILE = "status.json"
# Codes whose licence refusal makes the reported state "invalid" (spec 16.2).
INVALID_CODES = {6001, 6004, 6005}


class UpdateError(Exception):
    """The feed could not be reached or the configuration is unusable (no error code)."""


@dataclass
class Outcome:
    """What one check or install did."""

    ok: bool
    error: ProtocolError | None = None
    installed: list[str] = field(default_factory=list)  # target paths installed now
    available: list[str] = field(default_factory=list)  # what an install would take
    notes: list[str] = field(default_factory=list)

    @property
    def code(self) -> int | None:
        return self.error.code if self.error else None


@dataclass(frozen=True)
class LicenceInfo:
    state: str  # valid / expiring / expired / missing / invalid
    licence_id: str | None = None
    not_after: dt.datetime | None = None
    max_devices: int | None = None


def version_key(version: str) -> tuple[Any, ...]:
    """Dotted versions compared part by part, numbers as numbers ("1.10" > "1.9")."""
    parts: list[Any] = []
    for p in version.replace("-", ".").split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return tuple(parts)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(x: Any) -> dt.datetime:
    d = x.to_datetime() if hasattr(x, "to_datetime") else x
    return d if d.tzinfo else d.replace(tzinfo=dt.UTC)


def check_feed_url(url: str) -> str:
    """HTTPS, or plain HTTP to a loopback host only (MS-UPD-11); returns the base URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url.rstrip("/")
    raise UpdateError(f"the feed URL {url!r} must be https (plain http only to loopback)")


def _refusal(exc: Exception, what: str) -> ProtocolError:
    """A tuf exception → the MeterSync error it means."""
    from tuf.api import exceptions as tx

    if isinstance(exc, tx.UnsignedMetadataError):
        return ProtocolError("FEED_SIGNATURE_INVALID", f"{what}: {exc}")
    if isinstance(exc, tx.BadVersionNumberError):
        return ProtocolError("FEED_ROLLBACK", f"{what}: {exc}")
    if isinstance(exc, tx.ExpiredMetadataError):
        return ProtocolError("FEED_EXPIRED", f"{what}: {exc}")
    if isinstance(exc, tx.DownloadLengthMismatchError):  # stopped at the length bound
        return ProtocolError("ARTIFACT_MISMATCH", f"{what}: {exc}", requirement="MS-UPD-9")
    if isinstance(exc, tx.LengthOrHashMismatchError):
        return ProtocolError("ARTIFACT_MISMATCH", f"{what}: {exc}")
    # Any other failed check of the metadata (wrong type, bad meta version…): not trusted.
    return ProtocolError("FEED_SIGNATURE_INVALID", f"{what}: {type(exc).__name__}: {exc}")


# --- licences ------------------------------------------------------------------------------


def parse_licence(data: bytes) -> Any:
    """Licence bytes → the generated Licence, through the safe XML edge (MS-UPD-20)."""
    from metersync import xml_edge

    try:
        return xml_edge.parse_message(data, expect=("Licence",)).obj
    except ProtocolError as exc:
        raise ProtocolError("LICENCE_INVALID", f"not a valid Licence document: {exc}") from None


def check_licence(lic: Any, product: str, agent_id: str | None, now: dt.datetime) -> None:
    """Raise 6005 when the licence is not for us, 6006 outside its validity (MS-UPD-21)."""
    if lic.product.value != product:
        raise ProtocolError(
            "LICENCE_INVALID", f"licence {lic.licence_id} is for the {lic.product.value}"
        )
    if product == "agent" and lic.agent_id and agent_id not in lic.agent_id:
        raise ProtocolError(
            "LICENCE_INVALID", f"licence {lic.licence_id} is bound to other agents, not {agent_id}"
        )
    if now < _aware(lic.not_before):
        raise ProtocolError("LICENCE_EXPIRED", f"licence {lic.licence_id} is not valid yet")
    if now > _aware(lic.not_after):
        raise ProtocolError(
            "LICENCE_EXPIRED", f"licence {lic.licence_id} expired at {lic.not_after}"
        )


def licence_state(
    state_dir: Path, product: str, agent_id: str | None, now: dt.datetime | None = None
) -> LicenceInfo:
    """The state of the licence this implementation runs under (spec table 16.2)."""
    now = now or _utcnow()
    best: Any = None
    expired: Any = None
    for path in sorted((state_dir / LICENCES_DIR).glob("*.xml")):
        try:
            lic = parse_licence(path.read_bytes())
        except (OSError, ProtocolError):
            continue
        try:
            check_licence(lic, product, agent_id, now)
        except ProtocolError as exc:
            later = expired is None or _aware(lic.not_after) > _aware(expired.not_after)
            if exc.code == 6006 and now > _aware(lic.not_after) and later:
                expired = lic
            continue
        if best is None or _aware(lic.not_after) > _aware(best.not_after):
            best = lic
    if best is not None:
        not_after = _aware(best.not_after)
        soon = not_after - now <= dt.timedelta(days=EXPIRING_DAYS)
        return LicenceInfo(
            "expiring" if soon else "valid", best.licence_id, not_after, best.max_devices
        )
    if expired is not None:
        return LicenceInfo(
            "expired", expired.licence_id, _aware(expired.not_after), expired.max_devices
        )
    code = read_status(state_dir).get("licenceCode")
    if code in INVALID_CODES:
        return LicenceInfo("invalid")
    if code == 6006:
        return LicenceInfo("expired")
    return LicenceInfo("missing")


def licence_model(info: LicenceInfo) -> Any:
    """LicenceInfo → the generated LicenceState of AgentStatus."""
    from xsdata.models.datatype import XmlDateTime

    import metersync_generated.v1 as model

    return model.LicenceState(
        state=model.LicenceStateName(info.state),
        licence_id=info.licence_id,
        not_after=None
        if info.not_after is None
        else XmlDateTime.from_datetime(info.not_after.replace(microsecond=0)),
        max_devices=info.max_devices,
    )


# --- status and installed versions ---------------------------------------------------------


def read_status(state_dir: Path) -> dict[str, Any]:
    status: dict[str, Any] = read_json(state_dir / UPDATES_DIR / STATUS_FILE)
    return status


def staged_versions(state_dir: Path) -> list[str]:
    base = state_dir / UPDATES_DIR
    if not base.is_dir():
        return []
    found = [d.name for d in base.iterdir() if (d / "installed.json").is_file()]
    return sorted(found, key=version_key)


# --- the client ----------------------------------------------------------------------------


class UpdateClient:
    """One check or install against the feed; a new instance per run (ngclient's rule)."""

    def __init__(
        self,
        state_dir: Path,
        feed_url: str,
        trusted_root: bytes,
        *,
        product: str,
        running_version: str,
        agent_id: str | None = None,
        platform: str = PLATFORM,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.base = check_feed_url(feed_url)
        self.trusted_root = trusted_root
        self.product = product
        self.running_version = running_version
        self.agent_id = agent_id
        self.platform = platform

    @property
    def installed_version(self) -> str:
        return max([self.running_version, *staged_versions(self.state_dir)], key=version_key)

    def _updater(self) -> Any:
        from tuf.ngclient import Updater

        meta = self.state_dir / TUF_DIR
        meta.mkdir(parents=True, exist_ok=True)
        return Updater(
            str(meta),
            f"{self.base}/metadata/",
            target_base_url=f"{self.base}/targets/",
            bootstrap=self.trusted_root,
        )

    def run(
        self, *, install: bool, allow_downgrade: bool = False, version: str | None = None
    ) -> Outcome:
        """The full workflow (MS-UPD-3): refresh metadata, pick, download, verify, install.

        Stops at the first failed check; what failed is recorded in status.json."""
        out = Outcome(ok=True)
        licence_code: int | None = read_status(self.state_dir).get("licenceCode")
        try:
            updater, targets = self._refresh()
            software, licences = self._pick(targets, allow_downgrade, version, out)
            out.available = [p for p in [software] if p] + licences
            if install:
                licence_code = self._install_licences(updater, licences, out)
                if software:
                    self._install_software(updater, software, targets[software], out)
        except ProtocolError as exc:
            out.ok, out.error = False, exc
            if exc.code in (6005, 6006) or (exc.code == 6004 and "licences/" in exc.message):
                licence_code = exc.code
        if install or out.error:
            self._record(out, licence_code)
        return out

    def _refresh(self) -> tuple[Any, dict[str, Any]]:
        from tuf.api import exceptions as tx
        from tuf.api.metadata import Metadata

        try:
            updater = self._updater()
            updater.refresh()
        except (tx.RepositoryError, tx.DownloadLengthMismatchError) as exc:
            # A metadata file longer than its listed length or the fixed bound (MS-UPD-9).
            raise _refusal(exc, "the feed's metadata is refused") from None
        except tx.DownloadError as exc:
            raise UpdateError(f"the feed {self.base} cannot be read: {exc}") from None
        except (OSError, ValueError) as exc:
            raise UpdateError(f"the trusted root or the metadata cache is unusable: {exc}") from exc
        # targets.json in the cache is exactly what refresh() just verified.
        md = Metadata.from_file(str(self.state_dir / TUF_DIR / "targets.json"))
        return updater, dict(md.signed.targets)

    def _pick(
        self, targets: dict[str, Any], allow_downgrade: bool, version: str | None, out: Outcome
    ) -> tuple[str | None, list[str]]:
        """The software target to install (or None) and the licence targets (MS-UPD-12)."""
        current = self.installed_version
        best: tuple[tuple[Any, ...], str] | None = None
        licences: list[str] = []
        for path, t in targets.items():
            meta = (t.custom or {}).get("metersync") or {}
            if meta.get("product") != self.product:
                continue
            if meta.get("kind") == "licence":
                licences.append(path)
            elif meta.get("kind") == "software" and meta.get("platform") in (self.platform, "any"):
                v = str(meta.get("version", ""))
                if version is not None and v != version:
                    continue
                newer = version_key(v) > version_key(current)
                if not newer and not (allow_downgrade and version == v and v != current):
                    if version is not None:
                        out.notes.append(
                            f"{v} is not newer than {current}: add --allow-downgrade (MS-UPD-17)"
                        )
                    continue
                if best is None or version_key(v) > best[0]:
                    best = (version_key(v), path)
        if version is not None and best is None and not out.notes:
            out.notes.append(f"the feed has no {self.product} {version} for {self.platform}")
        return (best[1] if best else None), sorted(licences)

    def _download(self, updater: Any, path: str, dest: Path) -> Path:
        from tuf.api import exceptions as tx

        info = updater.get_targetinfo(path)
        if info is None:
            raise ProtocolError("FEED_SIGNATURE_INVALID", f"{path} is not in the signed targets")
        try:
            updater.download_target(info, str(dest))
        except (tx.RepositoryError, tx.DownloadLengthMismatchError) as exc:
            dest.unlink(missing_ok=True)  # MS-UPD-8: delete the file
            raise _refusal(exc, f"the target {path} is refused") from None
        except tx.DownloadError as exc:
            dest.unlink(missing_ok=True)
            raise UpdateError(f"the target {path} cannot be downloaded: {exc}") from None
        return dest

    def _install_licences(self, updater: Any, paths: list[str], out: Outcome) -> int | None:
        """Install every licence that applies (MS-UPD-14, MS-UPD-21); returns the licence code."""
        if not paths:
            return read_status(self.state_dir).get("licenceCode")
        now = _utcnow()
        installed_dir = self.state_dir / LICENCES_DIR
        installed_dir.mkdir(parents=True, exist_ok=True)
        refused: list[ProtocolError] = []
        applies = 0
        with tempfile.TemporaryDirectory(dir=self.state_dir) as tmp:
            for path in paths:
                data = self._download(updater, path, Path(tmp) / "licence.xml").read_bytes()
                try:
                    lic = parse_licence(data)
                    check_licence(lic, self.product, self.agent_id, now)
                except ProtocolError as exc:
                    refused.append(exc)
                    continue
                applies += 1
                dest = installed_dir / f"{lic.licence_id}.xml"
                if dest.exists() and dest.read_bytes() == data:
                    continue
                _write_bytes(dest, data)
                out.installed.append(path)
        if applies:
            for exc in refused:
                out.notes.append(f"not for this {self.product}: {exc}")
            return None
        if refused:  # nothing in the feed applies: say why (the agent keeps what it has)
            worst = next((e for e in refused if e.code == 6005), refused[0])
            raise worst
        return None

    def _install_software(self, updater: Any, path: str, target: Any, out: Outcome) -> None:
        meta = target.custom["metersync"]
        version = str(meta["version"])
        base = self.state_dir / UPDATES_DIR
        base.mkdir(parents=True, exist_ok=True)
        final = base / version
        work = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
        try:
            artifact = self._download(updater, path, work / Path(path).name)
            record = {
                "target": path,
                "version": version,
                "product": self.product,
                "platform": meta.get("platform"),
                "length": artifact.stat().st_size,
                "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
                "installedAt": _utcnow().replace(microsecond=0).isoformat(),
                "previous": self.installed_version,
            }
            write_json(work / "installed.json", record)
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)  # one rename: staged completely or not at all
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        out.installed.append(path)

    def _record(self, out: Outcome, licence_code: int | None) -> None:
        status = {
            "checkedAt": _utcnow().replace(microsecond=0).isoformat(),
            "ok": out.ok,
            "code": out.code,
            "message": out.error.message if out.error else None,
            "installed": out.installed,
            "licenceCode": licence_code,
        }
        write_json(self.state_dir / UPDATES_DIR / STATUS_FILE, status)


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def describe(out: Outcome, client: UpdateClient, install: bool) -> str:
    """A few lines for the operator: what was found, installed or refused, and what next."""
    lines: list[str] = []
    if out.error:
        lines.append(f"update refused: {out.error}")
        lines.append(f"nothing was installed; keeping {client.installed_version}")
    elif not install:
        lines.append("available: " + (", ".join(out.available) if out.available else "nothing new"))
    elif out.installed:
        for p in out.installed:
            lines.append(f"installed {p}")
        staged = [p for p in out.installed if not p.startswith("licences/")]
        if staged:
            lines.append(
                f"software staged in {client.state_dir / UPDATES_DIR}; "
                "restart the service to activate it"
            )
    else:
        lines.append(f"up to date ({client.installed_version})")
    lines.extend(out.notes)
    info = licence_state(client.state_dir, client.product, client.agent_id)
    lic = f"licence: {info.state}"
    if info.licence_id:
        lic += f" ({info.licence_id}, until {info.not_after:%Y-%m-%d})"
    lines.append(lic)
    return "\n".join(lines)


EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
