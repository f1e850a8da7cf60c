"""Operations: /metrics behind the operator token, private database files, logs (text with
ISO-8601 UTC times, JSON lines, the access log) of a real `metersync manager serve`."""

from __future__ import annotations

import json
import logging
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
from test_end_to_end import _free_tcp_port, _wait
from test_manager_support import Server, TestAgent, new_token

from metersync import logs
from metersync_manager.store import Store, sqlite_url

CLI = [sys.executable, "-m", "metersync.cli"]


def test_metrics_count_answers_by_code(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "data"))
    store.migrate()
    try:
        with Server(store) as srv:
            assert httpx.get(srv.url + "/metrics").status_code == 401  # operator token needed
            agent = TestAgent()
            body = agent.enrollment("NoSuchToken0123456789abc")
            r = httpx.post(srv.url + "/v1/enroll", content=body, headers=agent.headers(body))
            assert r.status_code == 403
            body = agent.enrollment(new_token(store))
            r = httpx.post(srv.url + "/v1/enroll", content=body, headers=agent.headers(body))
            assert r.status_code == 200
            got = httpx.get(srv.url + "/metrics", headers=srv.api_headers)
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
            text = got.text
    finally:
        store.close()
    refused = re.search(r'metersync_messages_total\{code="(\d+)",endpoint="enroll",'
                        r'outcome="refused"\} 1\.0', text)  # fmt: skip
    assert refused and refused.group(1).startswith("2"), text
    assert 'metersync_messages_total{code="0",endpoint="enroll",outcome="accepted"} 1.0' in text
    assert 'metersync_ingest_seconds_count{endpoint="enroll"} 2.0' in text
    assert "metersync_channels_open 0.0" in text and "metersync_database_errors_total 0.0" in text


def test_database_files_are_private(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "new" / "dir"))
    store.migrate()
    store.close()
    folder = tmp_path / "new" / "dir"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in folder.iterdir():  # manager.db and SQLite's -wal / -shm beside it
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_text_format_has_iso_utc_times(capsys: object) -> None:
    logs.setup("warning", "text")
    try:
        logging.getLogger("metersync.test").info("hidden")
        logging.getLogger("metersync.test").warning("shown %d", 7)
    finally:
        root = logging.getLogger()
        root.handlers[:] = [h for h in root.handlers if h.get_name() != "metersync"]
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "hidden" not in err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 WARNING metersync\.test: shown 7\n", err
    ), err


def test_serve_json_lines_and_access_log(tmp_path: Path) -> None:
    port = _free_tcp_port()
    log = tmp_path / "m.log"
    argv = [*CLI, "manager", "serve", "--data-dir", str(tmp_path / "m"), "--bind"]
    argv += [f"127.0.0.1:{port}", "--log-format", "json", "--access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        _wait("manager up", lambda: httpx.get(url).status_code == 200, 30, proc=proc)
        _wait("access line", lambda: "GET /healthz" in log.read_text(), 10, proc=proc)
    finally:
        proc.terminate()
        proc.wait(15)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(x["logger"] == "metersync.manager" and "manager on" in x["message"] for x in lines)
    access = [x for x in lines if x["logger"] == logs.ACCESS]
    assert access and "GET /healthz" in access[0]["message"] and "200" in access[0]["message"]
