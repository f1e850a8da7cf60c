"""deploy/nginx-metersync.conf end to end: Debian's nginx on loopback terminating TLS in front
of `metersync manager serve --trusted-proxy 127.0.0.1 --public-url https://localhost:P/metersync`.

Through the proxy, under the /metersync prefix that nginx strips: enrollment failures are
counted per real client (X-Forwarded-For from the trusted proxy, a client's own claim ignored,
MS-OPS-1), a report above nginx's default 1 MiB body limit is stored and one above 16 MiB gets
the manager's XML 413, `/openapi.yaml` names the public URL, and a real agent opens its channel
by WebSocket through nginx and answers an operator's request (the signed path, MS-OPS-2).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_channel import CLI, Manager, Proc
from test_end_to_end import _free_tcp_port, _wait
from test_manager_support import Dev, TestAgent

from metersync import xml_edge
from metersync_agent.config import settings_from_toml_text
from metersync_conformance.peers.pki import Pki

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx-metersync.conf"
NS = "{urn:metersync:v1}"
BAD_TOKEN = "NoSuchToken0123456789abc"  # well-formed, never issued

pytestmark = pytest.mark.slow


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is missing: .ci/run installs it (apt-get install -y nginx)")
        pytest.skip("nginx is not installed: apt-get install -y nginx")
    return found


def site_config(text: str, listen: int, upstream: int, cert: Path, key: Path) -> str:
    """The example with only its port, upstream, certificate paths and name replaced."""
    subs = [
        (r"listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
        (r"server 127\.0\.0\.1:8470;", f"server 127.0.0.1:{upstream};"),
        (r"/etc/ssl/metersync/fullchain\.pem", str(cert)),
        (r"/etc/ssl/metersync/privkey\.pem", str(key)),
        (r"server_name dealer\.example;", "server_name localhost;"),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, pattern
    return text


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict[str, Any]]:
    nginx = _nginx()
    pki = Pki.create(tmp_path / "pki")
    port = _free_tcp_port()
    public = f"https://localhost:{port}/metersync"
    m = Manager(
        tmp_path / "m",
        tmp_path / "m.log",
        *("--trusted-proxy", "127.0.0.1/32", "--public-url", public),
    )
    site = tmp_path / "site.conf"
    site.write_text(
        site_config(SITE.read_text(), port, m.port, pki.server.cert_file, pki.server.key_file)
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "".join(f"{k}_temp_path {tmp_path}/{k};\n" for k in ("client_body", "proxy"))
    temps += "".join(f"{k}_temp_path {tmp_path}/{k};\n" for k in ("fastcgi", "uwsgi", "scgi"))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/nginx-error.log warn;\nevents {{}}\n"
        f"http {{\naccess_log {tmp_path}/nginx-access.log;\n{temps}include {site};\n}}\n"
    )
    proxy = Proc([nginx, "-c", str(main), "-p", str(tmp_path)], tmp_path / "nginx.log")
    procs = [m, proxy]
    ca = tmp_path / "ca.pem"
    ca.write_text(pki.trusted.cert_pem)
    try:
        _wait("manager up", lambda: m.get("/healthz").status_code == 200, 30)
        _wait(
            "nginx up",
            lambda: httpx.get(public + "/healthz", verify=str(ca)).status_code == 200,
            20,
            logs=f"logs in {tmp_path}",
        )
        yield {"m": m, "url": public, "ca": ca, "pki": pki, "tmp": tmp_path, "procs": procs}
    finally:
        for p in reversed(procs):
            p.stop()


def _client(ca: Path, source: str) -> httpx.Client:
    """A client connecting from the loopback address `source`."""
    transport = httpx.HTTPTransport(verify=str(ca), local_address=source)
    return httpx.Client(transport=transport, timeout=60)


def _code(r: httpx.Response) -> str | None:
    return xml_edge.parse_tree(r.content).findtext(f"{NS}code")


def _enroll(c: httpx.Client, url: str, agent: TestAgent, token: str, **hdr: str) -> httpx.Response:
    body = agent.enrollment(token)
    return c.post(url + "/v1/enroll", content=body, headers={**agent.headers(body), **hdr})


def test_nginx_example_end_to_end(deployment: dict[str, Any]) -> None:
    m, url, ca, tmp = deployment["m"], deployment["url"], deployment["ca"], deployment["tmp"]
    logs = f"logs in {tmp}"
    spec = httpx.get(url + "/openapi.yaml", verify=str(ca)).text
    assert f'servers:\n  - url: "{url}"' in spec  # the public URL, not 127.0.0.1:8470

    # Ten failed enrollments from one client lock out that client only (MS-LIM-6, MS-OPS-1).
    with _client(ca, "127.0.0.2") as bad, _client(ca, "127.0.0.3") as good:
        for _ in range(10):
            assert _enroll(bad, url, TestAgent(), BAD_TOKEN).status_code == 403
        assert _enroll(bad, url, TestAgent(), BAD_TOKEN).status_code == 429
        # a client's own X-Forwarded-For is not believed: nginx appends its real address
        spoof = {"X-Forwarded-For": "198.51.100.7"}
        assert _enroll(bad, url, TestAgent(), BAD_TOKEN, **spoof).status_code == 429
        agent = TestAgent()
        r = _enroll(good, url, agent, m.token())
        assert r.status_code == 200, r.text

        # Above nginx's default 1 MiB body: stored; above our 16 MiB: the manager's XML 413.
        devices = [Dev(key=f"sn:hp:BIG{i:05d}", serial=f"BIG{i:05d}") for i in range(3000)]
        report = agent.report(devices)
        assert len(report) > 1024 * 1024  # nginx refuses this by default
        r = good.post(url + "/v1/reports", content=report, headers=agent.headers(report))
        assert r.status_code == 200, r.text
        huge = report + b" " * (16 * 1024 * 1024 + 1 - len(report))
        r = good.post(url + "/v1/reports", content=huge, headers=agent.headers(huge))
        assert r.status_code == 413 and _code(r) == "1003", r.text[:300]
    listed = m.get("/api/v1/devices", params={"limit": 1000}).json()["items"]
    assert len(listed) == 1000  # stored (a page of the 3,000), read back on the manager's own port

    # A real agent under the prefix: enrollment, then its channel by WebSocket through nginx.
    a = _run_agent(tmp, url, m.token(), deployment["pki"].trusted.cert_pem)
    deployment["procs"].append(a)
    _wait("agent enrolled", lambda: (tmp / "a" / "enrolled").exists(), 30, logs=logs)
    agent_id = (tmp / "a" / "agent-id").read_text().strip()
    headers = m.api_headers
    ask = f"{url}/api/v1/agents/{agent_id}/channel"

    def status() -> httpx.Response | None:
        r = httpx.get(ask, params={"path": "/status"}, headers=headers, verify=str(ca), timeout=60)
        return r if r.status_code == 200 else None

    r = _wait("the channel answers through nginx", status, 40, logs=logs)
    assert r.headers["MeterSync-Channel-Transport"] == "websocket"
    root = xml_edge.parse_tree(r.content)
    assert root.tag == f"{NS}AgentStatus" and root.get("agentId") == agent_id
    assert "2003" not in (tmp / "a.log").read_text()  # no signature refusal of the channel


def _run_agent(tmp: Path, url: str, token: str, ca_pem: str) -> Proc:
    settings = settings_from_toml_text(
        f"""
[manager]
url = "{url}"
enrollment_token = "{token}"
ca_bundle = '''{ca_pem}'''
[http]
timeout = 10
[targets]
include = ["127.0.6.99"]
[[credentials]]
version = "2c"
community = "public"
[schedule]
poll_interval = 60
discovery_interval = 3600
[snmp]
timeout = 1
retries = 0
device_budget = 3
[channel]
enabled = true
"""
    )
    config = tmp / "a.xml"
    config.write_bytes(xml_edge.to_bytes(settings.provisioning))
    os.chmod(config, 0o600)
    argv = [*CLI, "agent", "run", "--config", str(config), "--state-dir", str(tmp / "a")]
    return Proc(argv, tmp / "a.log")


def test_site_config_substitution_is_exact() -> None:
    with pytest.raises(AssertionError):
        site_config("listen 80;", 1, 2, Path("c"), Path("k"))
