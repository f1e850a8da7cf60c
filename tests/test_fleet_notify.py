"""Notification delivery from the durable queue: retries with backoff, a webhook disabled after
repeated failure (with an alert of its own), digests, and no event for a deduplicated alert.
A real webhook receiver and a real aiosmtpd relay on loopback; the queue in a real store.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiosmtpd.controller import Controller
from test_end_to_end import _free_tcp_port
from test_fleet import Story, printer
from test_fleet_pipeline import Mailbox, Receiver
from test_manager_support import store  # noqa: F401

from metersync_manager.fleet import alerts, notify
from metersync_manager.fleet.notify import NotifyConfig, Sender, SmtpRelay
from metersync_manager.scope import ADMIN
from metersync_manager.store import Store


def _deliveries(db: Store) -> list[dict[str, Any]]:
    return notify.deliveries(db, ADMIN, 1000)


def test_webhook_retries_then_is_disabled_and_enabled_again(store: Store) -> None:  # noqa: F811
    receiver = Receiver()
    s = Story(store)
    hook = notify.add_target(store, ADMIN, kind="webhook", address=receiver.url + "/x",
                             customer="default", now=s.now)  # fmt: skip
    broken = Receiver()
    broken.server.shutdown()
    broken.server.server_close()  # nobody listens there any more: connection refused
    bad = notify.add_target(store, ADMIN, kind="webhook", address=broken.url,
                            customer="default", now=s.now)  # fmt: skip
    jam = [{"index": 1, "code": "jam", "raw": 8}]
    for _ in range(3):  # the same condition three times: one alert, one event
        s.report(printer("sn:n:1", 100, 80, alerts=jam))
    assert len(s.alerts("printer-error")) == 1
    sender = Sender(store, NotifyConfig(max_failures=3, backoff=60), lambda: s.now)

    async def rounds(n: int, step: timedelta) -> None:
        for _ in range(n):
            await sender.run_once()
            s.now += step
        await sender.close()

    asyncio.run(rounds(1, timedelta(seconds=1)))
    assert len(receiver.got) == 1
    failing = [d for d in _deliveries(store) if d["targetId"] == bad["targetId"]]
    assert len(failing) == 1 and failing[0]["state"] == "pending" and failing[0]["attempts"] == 1
    assert "ConnectError" in (failing[0]["lastError"] or "")
    asyncio.run(rounds(1, timedelta(seconds=1)))  # backoff: not due again yet
    assert [d["attempts"] for d in _deliveries(store) if d["targetId"] == bad["targetId"]] == [1]
    asyncio.run(rounds(4, timedelta(hours=2)))
    (target,) = [t for t in notify.list_targets(store, ADMIN) if t["targetId"] == bad["targetId"]]
    assert not target["enabled"] and target["failures"] == 3
    (failing_alert,) = s.alerts("webhook-failing")
    assert failing_alert["subject"] == {"kind": "webhook", "id": str(bad["targetId"])}
    # the healthy webhook heard of it; the disabled one gets nothing new
    asyncio.run(rounds(1, timedelta(seconds=1)))
    types = [receiver.events(hook["secret"])[i]["type"] for i in range(len(receiver.got))]
    assert types == ["alert.opened", "alert.opened"]
    assert receiver.events(hook["secret"])[1]["alert"]["rule"] == "webhook-failing"

    notify.set_enabled(store, ADMIN, bad["targetId"], True, s.now)
    assert s.alerts("webhook-failing") == []
    assert [t["enabled"] for t in notify.list_targets(store, ADMIN)] == [True, True]


def test_mail_immediate_digest_and_recovery(store: Store) -> None:  # noqa: F811
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_tcp_port())
    smtp.start()
    try:
        s = Story(store)
        notify.add_target(store, ADMIN, kind="email", address="now@example.com",
                          customer="default", now=s.now)  # fmt: skip
        notify.add_target(store, ADMIN, kind="email", address="daily@example.com",
                          customer="default", now=s.now, mode="digest")  # fmt: skip
        relay = SmtpRelay("127.0.0.1", smtp.port, "metersync@example.com", "none")
        sender = Sender(store, NotifyConfig(smtp=relay), lambda: s.now)
        jam = [{"index": 1, "code": "jam", "raw": 8}]
        s.report(printer("sn:n:2", 100, 80, alerts=jam))
        (a,) = s.alerts("printer-error")
        alerts.resolve(store, ADMIN, a["alertId"], s.now)

        async def send() -> None:
            await sender.run_once()
            await sender.close()

        asyncio.run(send())
        assert [m.rcpt_tos for m in mailbox.mails] == [["now@example.com"]] * 2
        subjects = [_subject(m) for m in mailbox.mails]
        assert subjects[0].startswith("[MeterSync] Alert [critical] printer alert jam")
        assert subjects[1].startswith("[MeterSync] Resolved")
        s.now += timedelta(minutes=61)
        asyncio.run(send())
        digest = [m for m in mailbox.mails if m.rcpt_tos == ["daily@example.com"]]
        assert len(digest) == 1 and _subject(digest[0]) == "[MeterSync] digest: 2 events"
    finally:
        smtp.stop()


def _subject(mail: Any) -> str:
    from email import message_from_bytes

    return str(message_from_bytes(mail.original_content)["Subject"])
