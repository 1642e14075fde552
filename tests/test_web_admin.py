"""The admin pages over plain HTTP against the real cloud server process (``start_cloud``):
signed in through the real ``/signin`` form, every page renders for an admin and is refused for
a user (403) and for nobody (303 to sign in); operators see printers and jobs only. Forms change
what they say (checked through the API): add a printer, add a terminal (its secret shown once and
working), set prices, users and groups. The CSV export is the API's report, byte for byte. The QR
sheet has one QR code per printer: each SVG is rasterised with CairoSVG and decoded with a real
decoder (zxing-cpp); the decoded URL must be that printer's page.
"""

from __future__ import annotations

import io
import re
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from html import unescape
from pathlib import Path

import cairosvg  # type: ignore[import-untyped]
import pytest
import requests
import zxingcpp
from PIL import Image

from pullprint.cloud.web.admin import ADMIN_PAGE
from pullprint.cloudsync.client import AdminClient
from pullprint.model import JobState, Printer
from pullprint.peers.cloud import CloudServer
from pullprint.peers.ippeve import IppEvePrinter
from tests.test_cloud_api import held_job, start_cloud

PASSWORD = "admin pages password"
ADMIN_PAGES = (
    "/admin",
    "/admin/printers",
    "/admin/printers/printer1",
    "/admin/jobs",
    "/admin/terminals",
    "/admin/users",
    "/admin/prices",
    "/admin/retention",
    "/admin/nodes",
    "/admin/reports",
    "/admin/reports.csv",
    "/admin/transactions.csv",
    "/admin/qr",
)
STAFF_PAGES = ("/admin", "/admin/printers", "/admin/printers/printer1", "/admin/jobs")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"), "sqlite")
    try:
        with server.admin_client() as admin:
            admin.put_user("boss", role="admin", password=PASSWORD)
            admin.put_user("opal", role="operator", password=PASSWORD)
            admin.put_user("alice", password=PASSWORD)
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(cloud: CloudServer) -> Iterator[AdminClient]:
    with cloud.admin_client() as client:
        yield client


class Browser:
    """A requests session that signs in through the /signin form and posts forms with the
    page's CSRF token, as a browser does."""

    def __init__(self, cloud: CloudServer) -> None:
        self.base = cloud.url
        self.http = requests.Session()

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.get(self.base + path, timeout=20, allow_redirects=False, **kwargs)  # type: ignore[arg-type]

    def csrf(self, path: str) -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found.group(1)

    def post(
        self, path: str, data: Mapping[str, str | list[str]], page: str = "/admin"
    ) -> requests.Response:
        form = {"csrf_token": self.csrf(page), **data}
        return self.http.post(self.base + path, data=form, timeout=20, allow_redirects=False)

    def sign_in(self, name: str) -> Browser:
        answer = self.post("/signin", {"name": name, "password": PASSWORD, "next": "/"}, "/signin")
        assert answer.status_code == 303, answer.text
        assert "pullprint_session" in self.http.cookies
        return self


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_every_admin_page_renders_for_an_admin(cloud: CloudServer) -> None:
    boss = Browser(cloud).sign_in("boss")
    for path in ADMIN_PAGES:
        page = boss.get(path)
        assert page.status_code == 200, (path, page.text[:300])
    assert "printer1" in boss.get("/admin/printers").text
    assert "alice" in boss.get("/admin/users").text
    assert boss.get("/admin/printers/nosuch").status_code == 404


def test_admin_pages_are_refused_to_users_and_to_nobody(cloud: CloudServer) -> None:
    alice = Browser(cloud).sign_in("alice")
    nobody = Browser(cloud)
    for path in ADMIN_PAGES:
        assert alice.get(path).status_code == 403, path
        moved = nobody.get(path)
        assert moved.status_code == 303 and moved.headers["location"].startswith("/signin"), path
    refused = alice.post(
        "/admin/printers", {"name": "evil", "uri": "ipp://x/", "node": "node1"}, "/"
    )
    assert refused.status_code == 403
    opal = Browser(cloud).sign_in("opal")
    for path in ADMIN_PAGES:
        expected = 200 if path in STAFF_PAGES else 403
        assert opal.get(path).status_code == expected, path
    with cloud.admin_client() as admin:
        assert "evil" not in [p.name for p in admin.list_printers()]


def test_jobs_page_shows_every_job_once_a_page_at_a_time(
    cloud: CloudServer, admin: AdminClient, tmp_path: Path
) -> None:
    """/admin/jobs shows ADMIN_PAGE jobs, newest first; "Older jobs" goes on (keeping the state
    chosen) until the last page, "Newest jobs" back; a forged ``after`` is refused."""
    with cloud.node_client("node2") as node:
        for _ in range(ADMIN_PAGE + 5):
            held_job(node, tmp_path)
    boss = Browser(cloud).sign_in("boss")
    for state in ("", "held"):
        expected = [j.uuid for j in admin.list_jobs(state=JobState(state) if state else None)]
        assert len(expected) > ADMIN_PAGE
        path: str | None = f"/admin/jobs?state={state}" if state else "/admin/jobs"
        seen: list[str] = []
        pages = 0
        while path is not None:
            page = boss.get(path)
            assert page.status_code == 200, page.text[:300]
            rows = re.findall(r'<tr id="job-([0-9a-f-]{36})"', page.text)
            assert 0 < len(rows) <= ADMIN_PAGE
            seen += rows
            assert ("Newest jobs" in page.text) == (pages > 0)
            older = re.search(r'<a id="older" href="([^"]+)"', page.text)
            path = unescape(older.group(1)) if older else None
            if path is not None and state:
                assert f"state={state}" in path
            pages += 1
        assert seen == expected and pages == -(-len(expected) // ADMIN_PAGE)
    forged = boss.get("/admin/jobs?after=bm90IGEgY3Vyc29y")
    assert forged.status_code == 422 and "after must be" in _text(forged.text)


def test_add_printer_form_adds_it(cloud: CloudServer, admin: AdminClient) -> None:
    boss = Browser(cloud).sign_in("boss")
    form = {
        "name": "hall",
        "uri": "ipp://127.0.0.1:631/printers/hall",
        "node": "node2",
        "price": "0.07",
        "location": "Hall, 1st floor",
    }
    forged = boss.http.post(cloud.url + "/admin/printers", data=form, timeout=20)
    assert forged.status_code == 403  # no CSRF token
    done = boss.post("/admin/printers", form, "/admin/printers")
    assert done.status_code == 303 and done.headers["location"] == "/admin/printers/hall"
    stored = [p for p in admin.list_printers() if p.name == "hall"]
    assert stored == [
        Printer("hall", form["uri"], "node2", stored[0].price_per_page, "Hall, 1st floor")
    ]
    assert str(stored[0].price_per_page) == "0.07"
    assert "Printer hall saved." in boss.get("/admin/printers/hall").text
    bad = boss.post("/admin/printers", {**form, "uri": "not a uri"}, "/admin/printers")
    assert bad.status_code == 422 and "uri must be" in _text(bad.text)


def test_printer_test_shows_status_and_capabilities(
    cloud: CloudServer, admin: AdminClient, tmp_path: Path
) -> None:
    boss = Browser(cloud).sign_in("boss")
    with IppEvePrinter(tmp_path / "printer", name="webtest") as printer:
        admin.add_printer(Printer("webtest", printer.uri, "node1"))
        page = boss.get("/admin/printers/webtest?test=1")
        assert page.status_code == 200
        text = _text(page.text)
        assert "reachable" in text and "idle" in text
        assert "application/pdf" in text and "two-sided-long-edge" in text
    down = _text(boss.get("/admin/printers/webtest?test=1").text)
    assert "problem" in down and "reachable" not in down


def test_add_terminal_shows_the_secret_once_and_it_works(
    cloud: CloudServer, admin: AdminClient
) -> None:
    boss = Browser(cloud).sign_in("boss")
    done = boss.post(
        "/admin/terminals",
        {"name": "desk", "printer": "printer1", "methods": ["pin", "username"]},
        "/admin/terminals",
    )
    assert done.status_code == 200
    secret = re.search(r'id="secret">([^<]+)<', done.text)
    assert secret
    token = secret.group(1).strip()
    assert token.startswith("ppt_")
    listed = {t["name"]: t for t in admin.list_terminals()}
    assert listed["desk"] == {"name": "desk", "printer": "printer1", "methods": ["pin", "username"]}
    signed = requests.post(
        f"{cloud.url}/api/v1/terminal/sign-in",
        headers={"Authorization": f"Bearer {token}"},
        json={"user": "alice"},
        timeout=10,
    )
    assert signed.status_code == 201, signed.text
    assert token not in boss.get("/admin/terminals").text
    gone = boss.post("/admin/terminals/desk/delete", {}, "/admin/terminals")
    assert gone.status_code == 303
    assert "desk" not in {t["name"] for t in admin.list_terminals()}


def test_set_prices_form(cloud: CloudServer, admin: AdminClient) -> None:
    boss = Browser(cloud).sign_in("boss")
    lines = "# per sheet\n* mono one-sided 0.05\na4 color two-sided 0.25\n"
    done = boss.post(
        "/admin/prices/printer2", {"unit": "sheet", "prices": lines, "papercut": "no"},
        "/admin/prices",
    )  # fmt: skip
    assert done.status_code == 303
    stored = admin.get_prices("printer2")
    assert stored["unit"] == "sheet" and not stored["papercut"]
    assert sorted(stored["prices"], key=lambda e: e["media"]) == [
        {"media": "*", "color": "mono", "sides": "one-sided", "price": "0.05"},
        {"media": "a4", "color": "color", "sides": "two-sided", "price": "0.25"},
    ]
    page = boss.get("/admin/prices").text
    assert "a4 color two-sided 0.25" in page
    bad = boss.post("/admin/prices/printer2", {"unit": "sheet", "prices": "* purple x 1"})
    assert bad.status_code == 422 and "price line 1" in _text(bad.text)
    assert admin.get_prices("printer2") == stored


def test_users_and_groups_forms(cloud: CloudServer, admin: AdminClient) -> None:
    boss = Browser(cloud).sign_in("boss")
    name = f"w{uuidlib.uuid4().hex[:8]}"
    done = boss.post(
        "/admin/users",
        {"name": name, "role": "operator", "display_name": "Wendy", "pin": "8642",
         "password": "", "card": "0xBEEF01", "disabled": "no"},
    )  # fmt: skip
    assert done.status_code == 303
    user = admin.get_user(name)
    assert user["role"] == "operator" and user["has_pin"] and not user["has_password"]
    assert user["display_name"] == "Wendy" and user["cards"] and user["cards"][0]["approved"]
    boss.post("/admin/users", {"name": name, "role": "user", "disabled": "yes"})
    user = admin.get_user(name)
    assert user["role"] == "user" and user["disabled"] and user["has_pin"]  # PIN kept
    done = boss.post("/admin/groups", {"name": "web-team", "members": f"alice, {name}"})
    assert done.status_code == 303
    assert admin.get_group("web-team") == sorted(["alice", name])
    assert "web-team" in boss.get("/admin/users").text
    boss.post("/admin/groups/web-team/delete", {})
    with pytest.raises(Exception, match="no group"):
        admin.get_group("web-team")


def _printed(cloud: CloudServer, tmp_path: Path, pages: int, grey: bool) -> str:
    with cloud.node_client("node1") as node, cloud.admin_client() as admin:
        job, _ = held_job(node, tmp_path, owner="bob", origin="node1", pages=pages, copies=1)
        options = {"print-color-mode": "monochrome"} if grey else {}
        admin.release(job.uuid, "bob", "56789", "printer1", options)
        node.claim(job.uuid)
        node.progress(job.uuid, JobState.PRINTING)
        node.progress(job.uuid, JobState.COMPLETED, impressions=pages, sheets=pages)
    return job.uuid


def test_reports_charts_and_csv_export_match_the_api(
    cloud: CloudServer, admin: AdminClient, tmp_path: Path
) -> None:
    _printed(cloud, tmp_path, 3, grey=True)
    _printed(cloud, tmp_path, 2, grey=False)
    boss = Browser(cloud).sign_in("boss")
    headers = {"Authorization": f"Bearer {cloud.admin_token}"}
    for group, period in (("user", "month"), ("printer", "day"), ("period", "day")):
        csv_page = boss.get(f"/admin/reports.csv?group={group}&period={period}")
        api = requests.get(
            f"{cloud.url}/api/v1/accounting/reports",
            params={"group": group, "period": period, "format": "csv"},
            headers=headers,
            timeout=10,
        )
        assert csv_page.status_code == api.status_code == 200
        assert csv_page.content == api.content
        assert csv_page.headers["content-type"].startswith("text/csv")
    details = requests.get(
        f"{cloud.url}/api/v1/accounting/transactions",
        params={"format": "csv"},
        headers=headers,
        timeout=10,
    )
    assert boss.get("/admin/transactions.csv").content == details.content
    report = admin.report({"group": "printer"})
    pages = {r["key"]: r["pages"] for r in report["rows"]}
    page = boss.get("/admin/reports").text
    assert f"printer1: {pages['printer1']} pages" in page  # the bar's tooltip
    done = [r for r in admin.transactions({}) if r["status_code"] == "completed"]
    grey = re.search(r"grey: (\d+) pages", page)
    colour = re.search(r"colour: (\d+) pages", page)
    assert grey and colour
    assert int(grey.group(1)) >= 3 and int(colour.group(1)) >= 2
    assert int(grey.group(1)) + int(colour.group(1)) == sum(r["pages"] for r in done)


def _decode(svg: str) -> list[str]:
    """Rasterise one inline SVG QR code and decode it with zxing-cpp."""
    if "xmlns=" not in svg:
        svg = svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    png = cairosvg.svg2png(
        bytestring=svg.encode(), output_width=400, output_height=400, background_color="white"
    )
    image = Image.open(io.BytesIO(png)).convert("L")
    return [r.text for r in zxingcpp.read_barcodes(image)]


def test_qr_sheet_has_one_decodable_code_per_printer(
    cloud: CloudServer, admin: AdminClient
) -> None:
    admin.add_printer(Printer("qr-room", "ipp://127.0.0.1:9/ipp/print", "node2"))
    boss = Browser(cloud).sign_in("boss")
    page = boss.get("/admin/qr")
    assert page.status_code == 200
    figures = re.findall(
        r'<figure class="qr" data-printer="([^"]+)" data-url="([^"]+)">(.*?)</figure>',
        page.text,
        re.S,
    )
    names = sorted(p.name for p in admin.list_printers())
    assert sorted(f[0] for f in figures) == names
    for name, url, body in figures:
        svgs = re.findall(r"<svg.*?</svg>", body, re.S)
        assert len(svgs) == 1, name
        assert _decode(svgs[0]) == [f"{cloud.url}/p/{name}"] == [unescape(url)]


def test_nodes_and_retention_pages_show_what_the_cloud_knows(
    cloud: CloudServer, tmp_path: Path
) -> None:
    with cloud.node_client("node2") as node:
        held_job(node, tmp_path, owner="alice", origin="node2")
    boss = Browser(cloud).sign_in("boss")
    nodes = boss.get("/admin/nodes").text
    row = re.search(r'<tr id="node-node2">(.*?)</tr>', nodes, re.S)
    assert row and "configured" in row.group(1) and "ago" in row.group(1) and "seen" in row.group(1)
    retention = _text(boss.get("/admin/retention").text)
    expire = int(cloud.config.expire_seconds)
    assert f"cloud.expire_seconds = {expire}" in retention
    ran = boss.post("/admin/retention/run", {}, "/admin/retention")
    assert ran.status_code == 303
    assert "Retention sweep:" in boss.get("/admin/retention").text


def test_pages_per_day_has_no_gaps_and_bars_scale_to_the_largest() -> None:
    from pullprint.cloud.accounting.reports import ReportRow
    from pullprint.cloud.web.admin import bar_chart, days_with_pages

    rows = [ReportRow("2026-11-28", "EUR", pages=4), ReportRow("2026-12-01", "EUR", pages=8)]
    days = days_with_pages(rows)
    assert days == [("2026-11-28", 4), ("2026-11-29", 0), ("2026-11-30", 0), ("2026-12-01", 8)]
    assert days_with_pages([]) == []
    long_ago = [ReportRow("2026-01-01", "EUR", pages=1), ReportRow("2026-12-01", "EUR", pages=2)]
    assert len(days_with_pages(long_ago)) == 31  # the last 31 days only
    chart = bar_chart("Pages per day", days)
    heights = [b.height for b in chart.bars]
    assert heights[3] == max(heights) and heights[0] == heights[3] / 2 and heights[1] == 0
    assert chart.total == 12 and all(b.x + b.width <= chart.width for b in chart.bars)
