"""Operations: /metrics behind the operator token; private database files (the logs are
tests/test_logs.py)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx
from test_manager_support import Server, TestAgent, new_token

from metersync_manager.store import Store, sqlite_url


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
