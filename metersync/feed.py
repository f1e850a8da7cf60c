"""An update feed on disk: a TUF repository of software and licences (spec chapter 16).

Written with the `tuf` Metadata API and Ed25519 keys from securesystemslib, so what a dealer or
a test publishes is exactly what every TUF client reads. Layout of a feed directory:

    metadata/   1.root.json, 2.root.json …, root.json, targets.json, snapshot.json, timestamp.json
    targets/    the artifacts, at their target paths (software/…, licences/<licenceId>.xml)
    keys/       one private key per top-level role (PEM, mode 0600): keep root's offline

Serve `metadata/` and `targets/` over HTTPS (any static file server). Each change re-signs
targets, snapshot and timestamp with higher versions; `publish` alone refreshes the expiries
(run it daily from cron: the timestamp expires after a day).

    feed = Feed.create(Path("feed"))
    feed.add_software(Path("agent.whl"), product="agent", version="1.2.0", platform="python")
    feed.add_licence(licence_xml)      # validated against licence.xsd first
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROLES = ("root", "targets", "snapshot", "timestamp")
# MS-UPD-19: at most 1 day for timestamp, 7 days for snapshot, 1 year for targets and root.
EXPIRY = {
    "root": dt.timedelta(days=365),
    "targets": dt.timedelta(days=365),
    "snapshot": dt.timedelta(days=7),
    "timestamp": dt.timedelta(days=1),
}
PRODUCTS = ("agent", "manager")


class FeedError(ValueError):
    """A feed operation that cannot be done, with the reason."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _signer(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(load_pem_private_key(pem, None))  # type: ignore[arg-type]


def new_signer() -> Any:
    """A fresh Ed25519 signer (securesystemslib's CryptoSigner)."""
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner.generate_ed25519()


class Feed:
    """A TUF repository in a directory; every method leaves it signed and consistent."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.metadata_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"
        self.keys_dir = self.path / "keys"

    # -- creating and opening --

    @classmethod
    def create(cls, path: Path, *, expires: dict[str, dt.timedelta] | None = None) -> Feed:
        from tuf.api.metadata import Root

        feed = cls(path)
        if (feed.metadata_dir / "root.json").exists():
            raise FeedError(f"{feed.metadata_dir} already holds a feed")
        for d in (feed.metadata_dir, feed.targets_dir, feed.keys_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(feed.keys_dir, 0o700)
        ttl = {**EXPIRY, **(expires or {})}
        root = Root(expires=_now() + ttl["root"], consistent_snapshot=False)
        for role in ROLES:
            signer = new_signer()
            feed._write_key(role, signer)
            root.add_key(signer.public_key, role)
        feed._write("root", root, version_file=True)
        feed.publish(expires=ttl, fresh=True)
        return feed

    @classmethod
    def open(cls, path: Path) -> Feed:
        feed = cls(path)
        if not (feed.metadata_dir / "root.json").exists():
            raise FeedError(f"no feed in {feed.path} (run `metersync feed init` first)")
        return feed

    def _write_key(self, role: str, signer: Any) -> None:
        path = self.keys_dir / f"{role}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_bytes)

    def signer(self, role: str) -> Any:
        try:
            return _signer((self.keys_dir / f"{role}.pem").read_bytes())
        except OSError as exc:
            raise FeedError(f"the {role} key is not in {self.keys_dir}: {exc}") from None

    def load(self, role: str) -> Any:
        from tuf.api.metadata import Metadata

        return Metadata.from_file(str(self.metadata_dir / f"{role}.json"))

    def trusted_root(self) -> bytes:
        """The first root (1.root.json): what clients are provisioned with (MS-UPD-4)."""
        return (self.metadata_dir / "1.root.json").read_bytes()

    def _write(
        self,
        role: str,
        signed: Any,
        *,
        signers: list[Any] | None = None,
        version_file: bool = False,
    ) -> bytes:
        from tuf.api.metadata import Metadata
        from tuf.api.serialization.json import JSONSerializer

        md = Metadata(signed)
        for s in signers if signers is not None else [self.signer(role)]:
            md.sign(s, append=True)
        data = md.to_bytes(JSONSerializer(compact=False))
        if version_file:
            _atomic(self.metadata_dir / f"{signed.version}.{role}.json", data)
        _atomic(self.metadata_dir / f"{role}.json", data)
        return data

    # -- targets --

    def _add_target(self, name: str, data: bytes, custom: dict[str, Any]) -> str:
        from tuf.api.metadata import TargetFile

        if name.startswith("/") or ".." in name.split("/"):
            raise FeedError(f"bad target path {name!r}")
        target = TargetFile.from_data(name, data, ["sha256"])
        target.unrecognized_fields["custom"] = {"metersync": custom}
        md = self.load("targets")
        md.signed.targets[name] = target
        path = self.targets_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(path, data)
        self.publish(targets=md.signed)
        return name

    def add_software(
        self, data: bytes, *, product: str, version: str, platform: str, filename: str
    ) -> str:
        """Add a software artifact as target `<product>/<version>/<filename>`."""
        if product not in PRODUCTS:
            raise FeedError(f"product must be one of {', '.join(PRODUCTS)}, not {product!r}")
        name = f"{product}/{version}/{Path(filename).name}"
        custom = {"kind": "software", "product": product, "version": version}
        custom["platform"] = platform
        return self._add_target(name, data, custom)

    def add_licence(self, data: bytes) -> str:
        """Add a Licence document (validated against licence.xsd) as `licences/<id>.xml`."""
        from metersync import xml_edge
        from metersync.errors import ProtocolError

        try:
            lic = xml_edge.parse_message(data, expect=("Licence",)).obj
        except ProtocolError as exc:
            raise FeedError(f"not a valid Licence document: {exc}") from None
        custom = {"kind": "licence", "product": lic.product.value}
        return self._add_target(f"licences/{lic.licence_id}.xml", data, custom)

    def remove_target(self, name: str) -> None:
        md = self.load("targets")
        if md.signed.targets.pop(name, None) is None:
            raise FeedError(f"no target {name!r} in the feed")
        (self.targets_dir / name).unlink(missing_ok=True)
        self.publish(targets=md.signed)

    def targets(self) -> dict[str, dict[str, Any]]:
        """Target path → its custom.metersync object."""
        md = self.load("targets")
        return {p: (t.custom or {}).get("metersync", {}) for p, t in md.signed.targets.items()}

    # -- signing --

    def publish(
        self,
        *,
        targets: Any = None,
        expires: dict[str, dt.timedelta] | None = None,
        fresh: bool = False,
        timestamp_expires: dt.datetime | None = None,
    ) -> None:
        """Re-sign targets, snapshot and timestamp, each with its version raised by one."""
        from tuf.api.metadata import MetaFile, Snapshot, Targets, Timestamp

        ttl = {**EXPIRY, **(expires or {})}
        now = _now()
        if fresh:
            tgt, snap, ts = Targets(), Snapshot(), Timestamp()
        else:
            tgt = targets or self.load("targets").signed
            snap = self.load("snapshot").signed
            ts = self.load("timestamp").signed
            tgt.version += 1
            snap.version += 1
            ts.version += 1
        tgt.expires = now + ttl["targets"]
        self._write("targets", tgt)
        snap.meta["targets.json"] = MetaFile(version=tgt.version)
        snap.expires = now + ttl["snapshot"]
        self._write("snapshot", snap)
        ts.snapshot_meta = MetaFile(version=snap.version)
        ts.expires = timestamp_expires or now + ttl["timestamp"]
        self._write("timestamp", ts)

    def new_root(self, *, signers: list[Any] | None = None) -> Path:
        """Write root version n+1 (same keys), signed by `signers` (default: the root key)."""
        md = self.load("root")
        root = md.signed
        root.version += 1
        root.expires = _now() + EXPIRY["root"]
        self._write("root", root, signers=signers, version_file=True)
        return self.metadata_dir / f"{root.version}.root.json"


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_licence(
    licence_id: str,
    *,
    product: str = "agent",
    licensee: str = "Example Dealer",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    agent_ids: list[str] | None = None,
    max_devices: int | None = None,
    edition: str | None = None,
) -> bytes:
    """A Licence document (validated), valid for a year from now unless told otherwise."""
    from xsdata.models.datatype import XmlDateTime

    import metersync_generated.v1 as model
    from metersync import xml_edge

    now = _now()
    lic = model.Licence(
        version=xml_edge.PROTOCOL_VERSION,
        licence_id=licence_id,
        licensee=licensee,
        product=model.LicensedProduct(product),
        edition=edition,
        issued_at=XmlDateTime.from_datetime(now),
        not_before=XmlDateTime.from_datetime(not_before or now - dt.timedelta(days=1)),
        not_after=XmlDateTime.from_datetime(not_after or now + dt.timedelta(days=365)),
        max_devices=max_devices,
        agent_id=list(agent_ids or []),
    )
    return xml_edge.to_bytes(lic, pretty=True)


class FeedServer:
    """A static HTTP server for a feed directory on loopback, in a thread (tests, demos).

    Records the paths it was asked for (`requests`, and `log` with monotonic times), so a test
    can tell whether and when a client fetched anything. A path in `streams` is answered with
    the chunks of that function instead of the file (no Content-Length): an endless or
    oversize download; `sent` records, per such request, the bytes the client took before it
    closed (with at most twice `SEND_BUFFER`, as Linux doubles it, more in this server's socket
    buffer: kept small so that the count stays close to what the client read).
    Production feeds sit behind any HTTPS static file server."""

    SEND_BUFFER = 16 * 1024

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        import functools
        import http.server
        import socket
        import threading
        import time

        requests: list[str] = []
        self.requests = requests
        self.log: list[tuple[float, str]] = []
        self.streams: dict[str, Callable[[], Iterator[bytes]]] = {}
        self.sent: list[tuple[str, int]] = []
        log, streams, sent = self.log, self.streams, self.sent
        send_buffer = self.SEND_BUFFER

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                requests.append(self.path)
                log.append((time.monotonic(), self.path))
                stream = streams.get(self.path)
                if stream is None:
                    super().do_GET()
                    return
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                n = 0
                try:
                    for chunk in stream():
                        self.wfile.write(chunk)
                        n += len(chunk)
                except OSError:  # the client closed: it stopped reading
                    pass
                finally:
                    sent.append((self.path, n))
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        handler = functools.partial(Handler, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --- `metersync feed …` ----------------------------------------------------------------------


def _days(text: str) -> dt.timedelta:
    return dt.timedelta(days=float(text))


def _expiry_args(p: argparse.ArgumentParser) -> None:
    for role in ("targets", "snapshot", "timestamp"):
        p.add_argument(
            f"--{role}-days",
            type=_days,
            help=f"{role} expires after this many days (default {EXPIRY[role].days})",
        )


def _expiries(args: argparse.Namespace) -> dict[str, dt.timedelta]:
    out = {}
    for role in ("targets", "snapshot", "timestamp"):
        value = getattr(args, f"{role}_days", None)
        if value is not None:
            out[role] = value
    return out


def _cmd_init(args: argparse.Namespace) -> int:
    feed = Feed.create(Path(args.dir), expires=_expiries(args))
    print(
        f"feed created in {feed.path}; provision clients with {feed.metadata_dir / '1.root.json'}"
        f"; keep {feed.keys_dir / 'root.pem'} offline"
    )
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    feed = Feed.open(Path(args.dir))
    data = Path(args.file).read_bytes()
    if args.kind == "licence":
        name = feed.add_licence(data)
    else:
        if not args.version:
            raise FeedError("software needs --version")
        name = feed.add_software(
            data,
            product=args.product,
            version=args.version,
            platform=args.platform,
            filename=args.file,
        )
    print(f"added {name}; targets version {feed.load('targets').signed.version}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    feed = Feed.open(Path(args.dir))
    feed.publish(expires=_expiries(args))
    ts = feed.load("timestamp").signed
    print(f"published: timestamp version {ts.version}, expires {ts.expires.isoformat()}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    feed = Feed.open(Path(args.dir))
    print(json.dumps(feed.targets(), indent=2, sort_keys=True))
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="feed_command", metavar="COMMAND", required=True)
    init = sub.add_parser("init", help="create a feed: keys and signed metadata")
    init.add_argument("dir")
    _expiry_args(init)
    init.set_defaults(func=_guard(_cmd_init))
    add = sub.add_parser("add", help="add a software artifact or a licence, and publish")
    add.add_argument("dir")
    add.add_argument("kind", choices=["software", "licence"])
    add.add_argument("file")
    add.add_argument("--product", choices=PRODUCTS, default="agent")
    add.add_argument("--version", help="the software's version")
    add.add_argument("--platform", default="any", help="platform string (default any)")
    add.set_defaults(func=_guard(_cmd_add))
    pub = sub.add_parser("publish", help="re-sign with fresh expiries (run daily)")
    pub.add_argument("dir")
    _expiry_args(pub)
    pub.set_defaults(func=_guard(_cmd_publish))
    ls = sub.add_parser("list", help="print the targets and their metersync data")
    ls.add_argument("dir")
    ls.set_defaults(func=_guard(_cmd_list))


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except (FeedError, OSError) as exc:
            print(f"metersync feed: {exc}", file=sys.stderr)
            return 2

    return run
