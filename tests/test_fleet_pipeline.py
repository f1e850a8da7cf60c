"""Fleet intelligence end to end: snmpsim printer → `metersync agent run` → `metersync manager
serve`, with a webhook receiver and an aiosmtpd relay on loopback.

The printer starts jammed with its toner at 3 %: a printer-error and a supply-low alert open,
one supply order is placed, and each event reaches the webhook (signed, HMAC-SHA256) and the
mailbox. The manager is stopped; meanwhile the printer is cleared and gets a new cartridge, and
the agent queues its reports. After the restart both alerts resolve from the queued reports,
the recovery notices go out, and the receiver has seen every event exactly once, no order twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from test_end_to_end import Agent, Manager, _free_tcp_port, _wait, simulated_printers

from metersync import xml_edge
from metersync_agent.config import settings_from_toml_text

pytestmark = pytest.mark.slow
HOST = "127.0.5.61"
ERROR_STATE = "1.3.6.1.2.1.25.3.5.1.2.1"
TONER = "1.3.6.1.2.1.43.11.1.1.9.1.1"  # Black Toner, capacity 7200


class Receiver:
    """A webhook receiver: keeps every delivery (headers, exact body)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, secret: str) -> list[dict[str, Any]]:
        out = []
        for headers, body in self.got:
            ts = headers["x-metersync-timestamp"]
            mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
            assert headers["x-metersync-signature"] == "v1=" + mac.hexdigest()
            event = json.loads(body)
            assert headers["x-metersync-delivery"] == event["eventId"]
            assert event["schema"] == "metersync.webhook/1"
            out.append(event)
        return out


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append(envelope)
        return "250 OK"


def _set(recording: Path, values: dict[str, str]) -> None:
    lines = recording.read_text().splitlines()
    out = []
    for line in lines:
        oid = line.split("|", 1)[0]
        out.append(f"{oid}|{values[oid]}" if oid in values else line)
    tmp = recording.with_suffix(".tmp")
    tmp.write_text("\n".join(out) + "\n")
    os.replace(tmp, recording)
    t = time.time() + 2  # snmpsim re-reads a file whose mtime changed (whole seconds)
    os.utime(recording, (t, t))


def test_alerts_orders_webhooks_and_mail_across_a_manager_restart(tmp_path: Path) -> None:
    receiver, mailbox = Receiver(), Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_tcp_port())
    smtp.start()
    db = ["--data-dir", str(tmp_path / "manager")]
    manager = Manager(db, tmp_path / "manager.log")
    manager_start = manager.start

    def start() -> None:  # the manager with its relay (plain SMTP on loopback)
        import subprocess

        from test_end_to_end import CLI

        with manager.log.open("ab") as log:
            manager.proc = subprocess.Popen(
                [*CLI, "manager", "serve", "--bind", f"127.0.0.1:{manager.port}", *db,
                 "--smtp-relay", f"127.0.0.1:{smtp.port}", "--smtp-tls", "none",
                 "--fleet-tick", "2"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait("manager up", lambda: manager.get("/healthz")["status"] == "ok", 30, manager.proc)

    manager.start = start  # type: ignore[method-assign]
    del manager_start
    root = tmp_path / "printers"
    root.mkdir()
    with simulated_printers(root, [HOST], ["lexmark_ms"]) as port:
        recording = root / "lexmark_ms" / "public.snmprec"
        _set(recording, {ERROR_STATE: "4x|0400", TONER: "2|216"})  # jammed; 3 %
        token = manager.token()
        config = tmp_path / "agent.xml"
        settings = settings_from_toml_text(
            f'[manager]\nurl = "{manager.url}"\nenrollment_token = "{token}"\n'
            f'[targets]\ninclude = ["{HOST}:{port}"]\n[[credentials]]\nversion = "2c"\n'
            'community = "public"\n[schedule]\npoll_interval = 2\ndiscovery_interval = 3600\n'
            "[snmp]\ntimeout = 1\nretries = 1\n"
        )
        assert settings.provisioning is not None
        config.write_bytes(xml_edge.to_bytes(settings.provisioning, pretty=True))
        os.chmod(config, 0o600)
        agent = Agent(config, tmp_path / "agent-state", tmp_path / "agent.log")
        manager.start()
        api = manager.url + "/api/v1"
        hook = httpx.post(
            api + "/notify-targets",
            json={"kind": "webhook", "address": receiver.url, "customerId": "default"},
            headers=manager.api_headers,
        )
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        mail = httpx.post(
            api + "/notify-targets",
            json={"kind": "email", "address": "dealer@example.com"},
            headers=manager.api_headers,
        )
        assert mail.status_code == 201, mail.text
        agent.start()
        try:

            def active(rule: str) -> list[dict[str, Any]]:
                return manager.get(f"/api/v1/alerts?state=active&rule={rule}")["items"]

            _wait("the jam alert", lambda: active("printer-error"), 40, agent.proc)
            _wait("the toner alert", lambda: active("supply-low"), 20, agent.proc)
            (jam,) = active("printer-error")
            assert jam["key"] == "flag:jammed" and jam["severity"] == "critical"
            (low,) = active("supply-low")
            assert (
                low["evidence"]["level"] == 3.0 and low["evidence"]["description"] == "Black Toner"
            )
            _wait("an order", lambda: manager.get("/api/v1/orders")["items"], 20)
            _wait("three webhook events", lambda: len(receiver.got) >= 3, 20)
            _wait("three mails", lambda: len(mailbox.mails) >= 3, 20)

            manager.stop()
            _set(recording, {ERROR_STATE: "4x|0000", TONER: "2|7200"})  # cleared; new cartridge
            _wait("reports queued at the agent", lambda: agent.outbox()[1] >= 3, 30, agent.proc)
            manager.start()
            _wait(
                "both alerts resolved",
                lambda: not active("printer-error") and not active("supply-low"),
                40,
            )

            def resolved() -> int:
                return sum(e["type"] == "alert.resolved" for e in receiver.events(secret))

            _wait("the recovery webhooks", lambda: resolved() == 2, 20)
            _wait("the recovery mails", lambda: len(mailbox.mails) >= 5, 20)
            time.sleep(3)  # more polls of the healthy printer: nothing new must come
        finally:
            if agent.proc is not None:
                agent.proc.terminate()
                agent.proc.wait(20)
            if manager.proc is not None:
                manager.stop()
            smtp.stop()
            receiver.server.shutdown()

    events = receiver.events(secret)
    ids = [e["eventId"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    kinds = sorted(e["type"] for e in events)
    rules = sorted(e["alert"]["rule"] for e in events if "alert" in e)
    assert kinds == ["alert.opened", "alert.opened", "alert.resolved", "alert.resolved",
                     "supply.order"], rules  # fmt: skip
    (order,) = [e["order"] for e in events if e["type"] == "supply.order"]
    assert order["deviceKey"] == jam["subject"]["id"] and order["description"] == "Black Toner"
    assert len(manager_orders := [e for e in events if e["type"] == "supply.order"]) == 1
    del manager_orders
    subjects = sorted(m.original_content.decode().split("Subject: ")[1].split("\n")[0].strip()
                      for m in mailbox.mails)  # fmt: skip
    assert sum(s.startswith("[MeterSync] Resolved") for s in subjects) == 2, subjects
    assert sum(s.startswith("[MeterSync] Alert") for s in subjects) == 2, subjects
    assert all(m.rcpt_tos == ["dealer@example.com"] for m in mailbox.mails)
