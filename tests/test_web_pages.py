"""The web pages over plain HTTP against a real cloud server process: sign-in redirects, CSRF
refusals, web upload (and its errors), account forms, the kiosk, history statuses."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pikepdf
import pytest
import requests
from PIL import Image

from pullprint.cloud.web.upload import MAX_UPLOAD_BYTES
from pullprint.cloud.web.user import HISTORY_SHOWN, WAITING_SHOWN
from pullprint.config import OidcConfig, check_oidc
from pullprint.model import JobState, TransactionStatus
from pullprint.peers.cloud import CloudServer
from pullprint.peers.documents import make_pdf
from tests.test_cloud_api import start_cloud, submission
from tests.test_directory_sync import Served, make_env

PASSWORD = "alice-Secret-1"
PAGES = ("/", "/history", "/account", "/upload", "/printers", "/p/printer1")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path / "cloud", "sqlite")
    try:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        for name in ("alice", "bob"):
            done = requests.put(
                f"{server.url}/api/v1/users/{name}",
                json={"password": f"{name}-Secret-1"},
                headers=admin,
                timeout=10,
            )
            assert done.status_code == 200, done.text
        yield server
    finally:
        server.stop()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, page[:2000]
    return found.group(1)


def flashes(page: str) -> list[str]:
    return [
        m.replace("&#39;", "'") for m in re.findall(r'class="flash [a-z]+"[^>]*>([^<]*)<', page)
    ]


def sign_in(cloud: CloudServer, name: str = "alice") -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{cloud.url}/signin", timeout=10)
    done = browser.post(
        f"{cloud.url}/signin",
        data={"csrf_token": csrf_of(page.text), "name": name, "password": f"{name}-Secret-1"},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 303, done.text
    cookie = done.headers["set-cookie"]
    assert "pullprint_session=pps_" in cookie and "HttpOnly" in cookie
    return browser


def held_web_job(cloud: CloudServer, folder: Path, pages: int = 3) -> str:
    """A job registered by node1 (as the CUPS backend does) with a real PDF; its uuid."""
    doc = make_pdf(folder / f"held{pages}.pdf", pages)
    with cloud.node_client("node1") as node:
        sub = submission(doc, origin="node1", pages=pages, copies=1)
        node.register(sub)
        node.upload_document(sub.uuid, doc)
    return sub.uuid


def add_terminal(
    url: str,
    admin_token: str,
    name: str,
    printer: str,
    methods: list[str],
    cards: dict[str, str] | None = None,
) -> str:
    """Register the users' ``cards`` (approved) and a terminal; returns the terminal's token."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    for user, card in (cards or {}).items():
        requests.post(
            f"{url}/api/v1/users/{user}/cards", json={"card": card}, headers=headers, timeout=10
        ).raise_for_status()
    made = requests.post(
        f"{url}/api/v1/terminals",
        json={"name": name, "printer": printer, "methods": methods},
        headers=headers,
        timeout=10,
    )
    made.raise_for_status()
    return str(made.json()["token"])


def kiosk_post(kiosk: requests.Session, url: str, page: str, **fields: str) -> requests.Response:
    """Post a kiosk form (``/kiosk/<action>``, default signin) with the page's CSRF token."""
    action = fields.pop("action", "signin")
    return kiosk.post(
        f"{url}/kiosk/{action}", data={"csrf_token": csrf_of(page), **fields}, timeout=10
    )  # fmt: skip


def test_pages_redirect_to_sign_in_and_back(cloud: CloudServer) -> None:
    for path in PAGES:
        answer = requests.get(cloud.url + path, allow_redirects=False, timeout=10)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/signin?next={path}"
    browser = requests.Session()
    page = browser.get(f"{cloud.url}/signin?next=/history", timeout=10)
    assert 'name="next" value="/history"' in page.text
    done = browser.post(
        f"{cloud.url}/signin",
        data={"csrf_token": csrf_of(page.text), "name": "alice", "password": PASSWORD,
              "next": "/history"},
        timeout=10,
    )  # fmt: skip
    assert done.url.endswith("/history") and "<h1>History</h1>" in done.text
    # no open redirect through next (a fresh browser: the signed-in one has a new form token)
    browser = requests.Session()
    page = browser.get(f"{cloud.url}/signin", timeout=10)
    evil = browser.post(
        f"{cloud.url}/signin",
        data={"csrf_token": csrf_of(page.text), "name": "alice", "password": PASSWORD,
              "next": "//evil.example/"},
        allow_redirects=False,
        timeout=10,
    )  # fmt: skip
    assert evil.headers["location"] == "/"


def test_wrong_password_is_refused_and_sign_out_ends_the_session(cloud: CloudServer) -> None:
    browser = requests.Session()
    page = browser.get(f"{cloud.url}/signin", timeout=10)
    wrong = browser.post(
        f"{cloud.url}/signin",
        data={"csrf_token": csrf_of(page.text), "name": "alice", "password": "nope"},
        timeout=10,
    )
    assert wrong.status_code == 403
    assert "wrong user name or password" in flashes(wrong.text)
    browser = sign_in(cloud)
    queue = browser.get(cloud.url + "/", timeout=10)
    token = browser.cookies["pullprint_session"]
    out = browser.post(f"{cloud.url}/signout", data={"csrf_token": csrf_of(queue.text)}, timeout=10)
    assert out.url.endswith("/signin") and "Signed out." in flashes(out.text)
    # the server forgot the session: the old cookie no longer signs anyone in
    again = requests.get(
        cloud.url + "/", cookies={"pullprint_session": token}, allow_redirects=False, timeout=10
    )
    assert again.status_code == 303
    api = requests.get(
        f"{cloud.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert api.status_code == 401


def test_forms_without_the_csrf_token_are_refused(cloud: CloudServer, tmp_path: Path) -> None:
    uuid = held_web_job(cloud, tmp_path)
    alice = sign_in(cloud)
    bob = sign_in(cloud, "bob")
    bob_token = csrf_of(bob.get(cloud.url + "/", timeout=10).text)
    alice_token = csrf_of(alice.get(cloud.url + "/", timeout=10).text)
    assert bob_token != alice_token
    for data in ({}, {"csrf_token": "0" * 64}, {"csrf_token": bob_token}):
        for path, extra in (
            (f"/jobs/{uuid}/cancel", {}),
            (f"/jobs/{uuid}/release", {"printer": "printer1"}),
            ("/account/pin", {"pin": "4321", "pin2": "4321"}),
        ):
            answer = alice.post(cloud.url + path, data={**data, **extra}, timeout=10)
            assert answer.status_code == 403, (path, data)
            assert "did not come from this site" in answer.text
            assert answer.headers["content-type"].startswith("text/html")
    # nothing happened: the job is still held, the PIN unchanged
    with cloud.admin_client() as admin:
        assert admin.get_job(uuid).state is JobState.HELD
    # a sign-in form without its token is refused too (login CSRF)
    answer = requests.post(
        f"{cloud.url}/signin", data={"name": "alice", "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 403
    # with the token the same form works
    done = alice.post(
        f"{cloud.url}/jobs/{uuid}/cancel", data={"csrf_token": alice_token}, timeout=10
    )
    assert done.status_code == 200 and "Canceled 'report.pdf'." in flashes(done.text)


def test_queue_release_and_history(cloud: CloudServer, tmp_path: Path) -> None:
    uuid = held_web_job(cloud, tmp_path)
    canceled = held_web_job(cloud, tmp_path, pages=1)
    alice = sign_in(cloud)
    queue = alice.get(cloud.url + "/", timeout=10).text
    assert f"/jobs/{uuid}/thumb.png" in queue and "3 pages" in queue and "left" in queue
    thumb = alice.get(f"{cloud.url}/jobs/{uuid}/thumb.png", timeout=30)
    assert thumb.headers["content-type"] == "image/png"
    assert thumb.content.startswith(b"\x89PNG")
    # bob cannot see alice's job or its thumbnail
    bob = sign_in(cloud, "bob")
    assert bob.get(f"{cloud.url}/jobs/{uuid}/thumb.png", timeout=10).status_code == 403
    page = alice.get(
        f"{cloud.url}/jobs/{uuid}",
        params={"printer": "printer2", "color": "monochrome", "sides": "two-sided-long-edge"},
        timeout=10,
    ).text
    assert 'value="printer2" checked' in page
    assert (
        "print-color-mode <b>monochrome</b>" in page and "sides <b>two-sided-long-edge</b>" in page
    )
    assert "if supported, else" in page  # the cloud does not know the printer's capabilities
    assert "0.15 EUR" in page  # 3 impressions x 0.05 (one side each: counted per impression)
    bad = alice.get(f"{cloud.url}/jobs/{uuid}", params={"copies": "0"}, timeout=10).text
    assert "copies must be a whole number from 1 to 999" in bad
    done = alice.post(
        f"{cloud.url}/jobs/{uuid}/release",
        data={"csrf_token": csrf_of(page), "printer": "printer1", "color": "monochrome",
              "sides": "two-sided-long-edge", "copies": "2"},
        timeout=10,
    )  # fmt: skip
    assert "Released 'report.pdf' to printer1." in flashes(done.text)
    with cloud.admin_client() as admin:
        job = admin.get_job(uuid)
    assert job.state is JobState.RELEASED and job.printer == "printer1"
    assert job.release_options == {
        "print-color-mode": "monochrome", "sides": "two-sided-long-edge", "copies": "2"
    }  # fmt: skip
    again = alice.post(
        f"{cloud.url}/jobs/{uuid}/release",
        data={"csrf_token": csrf_of(page), "printer": "printer1"},
        timeout=10,
    )
    assert any("not held" in f for f in flashes(again.text)), flashes(again.text)
    alice.post(f"{cloud.url}/jobs/{canceled}/cancel", data={"csrf_token": csrf_of(page)})
    gone = alice.get(f"{cloud.url}/jobs/{canceled}/thumb.png", timeout=10)
    assert gone.status_code == 404 and "its document is deleted" in gone.text
    history = alice.get(f"{cloud.url}/history", timeout=10).text
    rows = dict(re.findall(r'<tr id="tx-([0-9a-f-]+)">(.*?)</tr>', history, re.S))
    assert "Pending (external)" in rows[uuid] and "—" in rows[uuid]
    assert "Canceled" in rows[canceled] and "EUR" not in rows[canceled]
    with cloud.admin_client() as admin:
        tx = admin.get_job(canceled).transaction
    assert tx is not None and tx.status is TransactionStatus.CANCELED


def test_printer_page_and_qr_code(cloud: CloudServer, tmp_path: Path) -> None:
    uuid = held_web_job(cloud, tmp_path)
    alice = sign_in(cloud)
    page = alice.get(f"{cloud.url}/p/printer1", timeout=10).text
    assert f'id="job-{uuid}"' in page and 'name="printer" value="printer1"' in page
    assert f"{cloud.url}/p/printer1" in page
    qr = requests.get(f"{cloud.url}/p/printer1/qr.svg", timeout=10)
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<svg") and "<path" in qr.text
    assert requests.get(f"{cloud.url}/p/nosuch/qr.svg", timeout=10).status_code == 404
    assert alice.get(f"{cloud.url}/p/nosuch", timeout=10).status_code == 404
    done = alice.post(
        f"{cloud.url}/jobs/{uuid}/release",
        data={"csrf_token": csrf_of(page), "printer": "printer1"},
        timeout=10,
    )
    assert "Released 'report.pdf' to printer1." in flashes(done.text)
    printers = alice.get(f"{cloud.url}/printers", timeout=10).text
    assert "busy" in printers  # a job is on its way to printer1
    # a job that failed on printer2 marks it as a problem, with the reason
    failing = held_web_job(cloud, tmp_path, pages=1)
    with cloud.admin_client() as admin:
        admin.release(failing, "alice", "1234", "printer2")
    with cloud.node_client("node2") as node:
        node.claim(failing)
        node.progress(failing, JobState.FAILED, None, None, "media-jam")
    printers = alice.get(f"{cloud.url}/printers", timeout=10).text
    assert "last job failed: media-jam" in printers


def big_pdf(path: Path, kib: int) -> Path:
    """A 1-page PDF of at least ``kib`` KiB (an incompressible image)."""
    return make_pdf(path, 1, image_kb=kib)


def test_web_upload_and_its_errors(cloud: CloudServer, tmp_path: Path) -> None:
    alice = sign_in(cloud)
    form = alice.get(f"{cloud.url}/upload", timeout=10).text
    token = csrf_of(form)
    assert 'enctype="multipart/form-data"' in form and "512 MB" in form

    def send(name: str, data: bytes, **fields: str) -> requests.Response:
        return alice.post(
            f"{cloud.url}/upload",
            data={"csrf_token": token, **fields},
            files={"document": (name, data, "application/octet-stream")},
            timeout=60,
        )

    # a PDF larger than the API's JSON body limit goes through (the upload is exempt)
    doc = big_pdf(tmp_path / "big.pdf", 600)
    assert doc.stat().st_size > 512 * 1024
    done = send("big.pdf", doc.read_bytes(), title="Quarterly")
    assert done.status_code == 200 and "Uploaded 'Quarterly' (1 page)" in flashes(done.text)[0]
    png = tmp_path / "photo.png"
    Image.new("RGBA", (400, 300), (200, 30, 30, 120)).save(png)
    done = send("photo.png", png.read_bytes())
    assert "Uploaded 'photo.png' (1 page)" in flashes(done.text)[0]
    jpeg = tmp_path / "scan.jpg"
    Image.new("RGB", (300, 400), (10, 90, 200)).save(jpeg, quality=80)
    assert "Uploaded 'scan.jpg'" in flashes(send("scan.jpg", jpeg.read_bytes()).text)[0]
    with cloud.admin_client() as admin:
        web = [j for j in admin.list_jobs(user="alice") if j.origin == "web"]
    assert len(web) == 3
    assert {j.state for j in web} == {JobState.HELD} and {j.cups_job_id for j in web} == {0}
    for job in web:
        thumb = alice.get(f"{cloud.url}/jobs/{job.uuid}/thumb.png", timeout=30)
        assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")

    refused = send("notes.txt", b"just text")
    assert refused.status_code == 422
    assert flashes(refused.text) == [
        "notes.txt: this file cannot be printed: upload a PDF, PNG or JPEG file"
    ]
    broken = send("broken.pdf", b"%PDF-1.7\nthis is not really a PDF")
    assert broken.status_code == 422 and "broken.pdf: unreadable PDF" in flashes(broken.text)[0]
    assert "/tmp" not in broken.text
    locked = tmp_path / "locked.pdf"
    with pikepdf.open(make_pdf(tmp_path / "plain.pdf", 1)) as pdf:
        pdf.save(locked, encryption=pikepdf.Encryption(user="u", owner="o"))
    answer = send("locked.pdf", locked.read_bytes())
    assert answer.status_code == 422 and "password-protected" in flashes(answer.text)[0]
    empty = send("empty.pdf", b"")
    assert empty.status_code == 422
    with cloud.admin_client() as admin:
        assert len([j for j in admin.list_jobs(user="alice") if j.origin == "web"]) == 3

    # too large: refused from the Content-Length, before the body is read
    host = urlsplit(cloud.url)
    cookie = f"pullprint_session={alice.cookies['pullprint_session']}"
    with socket.create_connection((host.hostname, host.port or 80), timeout=10) as conn:
        conn.sendall(
            (
                "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                f"Content-Length: {MAX_UPLOAD_BYTES + 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        raw = b""
        while b"</html>" not in raw and (chunk := conn.recv(65536)):
            raw += chunk
    text = raw.decode(errors="replace")
    assert text.startswith("HTTP/1.1 413")
    assert "the file is larger than the upload limit of 512 MB" in text


def test_account_pin_cards_and_delegates(cloud: CloudServer, tmp_path: Path) -> None:
    alice = sign_in(cloud)
    page = alice.get(f"{cloud.url}/account", timeout=10).text
    token = csrf_of(page)
    differ = alice.post(
        f"{cloud.url}/account/pin", data={"csrf_token": token, "pin": "2468", "pin2": "2469"}
    )
    assert "the two PINs differ" in flashes(differ.text)[0]
    short = alice.post(
        f"{cloud.url}/account/pin", data={"csrf_token": token, "pin": "12", "pin2": "12"}
    )
    assert "pin must be 4 to 8 digits" in flashes(short.text)[0]
    done = alice.post(
        f"{cloud.url}/account/pin", data={"csrf_token": token, "pin": "2468", "pin2": "2468"}
    )
    assert flashes(done.text) == ["Your PIN is set."]
    uuid = held_web_job(cloud, tmp_path)
    with cloud.admin_client() as admin:  # the new PIN releases, the old one does not
        admin.release(uuid, "alice", "2468", "printer1")
    card = alice.post(f"{cloud.url}/account/cards", data={"csrf_token": token, "card": "7788"})
    assert "waiting for an admin to approve it" in flashes(card.text)[0]
    assert "waiting for approval" in card.text
    delegate = alice.post(
        f"{cloud.url}/account/delegates",
        data={"csrf_token": token, "kind": "user", "delegate": "bob"},
    )
    assert flashes(delegate.text) == ["bob may now release your jobs."]
    nobody = alice.post(
        f"{cloud.url}/account/delegates",
        data={"csrf_token": token, "kind": "user", "delegate": "carol"},
    )
    assert flashes(nobody.text) == ["there is no user carol"]
    # bob now sees alice's held job in his queue
    other = held_web_job(cloud, tmp_path, pages=2)
    bob = sign_in(cloud, "bob")
    assert f'id="job-{other}"' in bob.get(cloud.url + "/", timeout=10).text
    removed = alice.post(
        f"{cloud.url}/account/delegates/remove",
        data={"csrf_token": token, "kind": "user", "delegate": "bob"},
    )
    assert flashes(removed.text) == ["bob may no longer release your jobs."]
    assert f'id="job-{other}"' not in bob.get(cloud.url + "/", timeout=10).text


def test_kiosk_card_pin_release_and_sign_out(cloud: CloudServer, tmp_path: Path) -> None:
    terminal = add_terminal(
        cloud.url, cloud.admin_token, "hall", "printer1", ["card", "pin"], {"alice": "4711"}
    )
    first, second = held_web_job(cloud, tmp_path), held_web_job(cloud, tmp_path, pages=2)
    kiosk = requests.Session()
    setup = kiosk.get(f"{cloud.url}/kiosk", timeout=10)
    assert setup.status_code == 401 and "Set up this terminal" in setup.text
    assert kiosk.get(f"{cloud.url}/kiosk?terminal=ppt_hall.wrong").status_code == 401
    by_form = requests.Session()  # the setup form keeps the token out of the address
    form = by_form.get(f"{cloud.url}/kiosk", timeout=10).text
    wrong_token = kiosk_post(by_form, cloud.url, form, action="setup", terminal="ppt_hall.x")
    assert wrong_token.status_code == 401
    done = kiosk_post(by_form, cloud.url, form, action="setup", terminal=terminal)
    assert done.url == f"{cloud.url}/kiosk" and 'id="card"' in done.text
    page = kiosk.get(f"{cloud.url}/kiosk?terminal={terminal}", timeout=10)
    assert page.url == f"{cloud.url}/kiosk"  # the token left the address
    assert 'id="card"' in page.text and "autofocus" in page.text
    assert "Who are you?" not in page.text  # no username selection at this terminal
    user_only = kiosk_post(kiosk, cloud.url, page.text, method="username", user="alice")
    assert "does not allow sign-in by username" in flashes(user_only.text)[0]
    wrong = kiosk_post(kiosk, cloud.url, page.text, method="card", card="1111")
    assert "this card is not registered" in flashes(wrong.text)[0]
    page = kiosk_post(kiosk, cloud.url, page.text, method="card", card="4711")
    assert 'id="countdown" data-seconds="' in page.text
    seconds = int(re.search(r'data-seconds="(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    assert 100 <= seconds <= 120  # cloud.terminal_session_seconds
    assert f'id="job-{first}"' in page.text and f'id="job-{second}"' in page.text
    # the kiosk session does not sign in the personal pages
    assert kiosk.get(cloud.url + "/", allow_redirects=False).status_code == 303
    page = kiosk_post(kiosk, cloud.url, page.text, action="release", job=first, color="monochrome")
    assert flashes(page.text) == ["report.pdf is printing on printer1."]
    page = kiosk_post(kiosk, cloud.url, page.text, action="release-all")
    assert flashes(page.text) == ["1 job(s) printing on printer1."]
    with cloud.admin_client() as admin:
        assert admin.get_job(first).release_options == {"print-color-mode": "monochrome"}
        assert admin.get_job(second).state is JobState.RELEASED
    session = kiosk.cookies["pullprint_kiosk"]
    page = kiosk_post(kiosk, cloud.url, page.text, action="signout")
    assert "Signed out." in flashes(page.text) and 'id="card"' in page.text
    me = requests.get(
        f"{cloud.url}/api/v1/me", headers={"Authorization": f"Bearer {session}"}, timeout=10
    )
    assert me.status_code == 401
    by_pin = kiosk_post(kiosk, cloud.url, page.text, method="pin", user="alice", pin="0000")
    assert flashes(by_pin.text) == ["wrong user name or PIN"]


def test_kiosk_username_selection_and_the_session_expires_on_the_server(
    tmp_path: Path,
) -> None:
    server = start_cloud(tmp_path / "cloud", "sqlite", terminal_session_seconds=2)
    try:
        token = add_terminal(server.url, server.admin_token, "desk", "printer2", ["username"])
        kiosk = requests.Session()
        page = kiosk.get(f"{server.url}/kiosk?terminal={token}", timeout=10)
        assert "Who are you?" in page.text and 'id="card"' not in page.text
        names = re.findall(r'name="user" value="([^"]+)"', page.text)
        assert names == ["alice", "bob"]
        card = kiosk_post(kiosk, server.url, page.text, method="card", card="123")
        assert "does not allow sign-in by card" in flashes(card.text)[0]
        page = kiosk_post(kiosk, server.url, page.text, method="username", user="bob")
        assert "bob · " in page.text and "job" in page.text and "printer2" in page.text
        deadline = time.monotonic() + 10
        while "Who are you?" not in page.text:  # signed out by the server, no click needed
            assert time.monotonic() < deadline, "the kiosk session did not expire"
            time.sleep(0.5)
            page = kiosk.get(f"{server.url}/kiosk", timeout=10)
        gone = kiosk_post(kiosk, server.url, page.text, action="release-all")
        assert flashes(gone.text) == ["signed out: sign in again"]
    finally:
        server.stop()


def test_documents_kept_on_the_node_show_a_placeholder_and_refuse_web_upload(
    tmp_path: Path,
) -> None:
    server = start_cloud(tmp_path / "cloud", "sqlite", storage_mode="node")
    try:
        requests.put(
            f"{server.url}/api/v1/users/alice",
            json={"password": PASSWORD},
            headers={"Authorization": f"Bearer {server.admin_token}"},
            timeout=10,
        ).raise_for_status()
        doc = make_pdf(tmp_path / "kept.pdf", 2)
        with server.node_client("node1") as node:
            sub = submission(doc, origin="node1", pages=2)
            node.register(sub)
        alice = sign_in(server)
        queue = alice.get(server.url + "/", timeout=10).text
        assert "kept on the print server" in queue and f"/jobs/{sub.uuid}/thumb.png" not in queue
        assert alice.get(f"{server.url}/jobs/{sub.uuid}/thumb.png").status_code == 404
        form = alice.get(f"{server.url}/upload", timeout=10).text
        refused = alice.post(
            f"{server.url}/upload",
            data={"csrf_token": csrf_of(form)},
            files={"document": ("a.pdf", doc.read_bytes(), "application/pdf")},
        )
        assert refused.status_code == 409
        assert "web upload needs documents stored in the cloud" in flashes(refused.text)[0]
    finally:
        server.stop()


def test_a_layout_applied_at_submission_cannot_change_at_release(
    cloud: CloudServer, tmp_path: Path
) -> None:
    doc = make_pdf(tmp_path / "twoup.pdf", 2)
    with cloud.node_client("node1") as node:
        sub = submission(doc, origin="node1", pages=2, copies=1)
        sub = type(sub)(**{**sub.to_json(), "options": {"number-up": "2"}})
        node.register(sub)
        node.upload_document(sub.uuid, doc)
    alice = sign_in(cloud)
    page = alice.get(f"{cloud.url}/jobs/{sub.uuid}", params={"number_up": "4"}, timeout=10).text
    assert "cannot change at release" in page
    assert 'id="release-button" disabled' in page
    refused = alice.post(
        f"{cloud.url}/jobs/{sub.uuid}/release",
        data={"csrf_token": csrf_of(page), "printer": "printer1", "number_up": "4"},
        timeout=10,
    )
    assert "cannot change at release" in flashes(refused.text)[0]
    with cloud.admin_client() as admin:
        assert admin.get_job(sub.uuid).state is JobState.HELD
    page = alice.get(f"{cloud.url}/jobs/{sub.uuid}", timeout=10).text
    assert "number-up <b>2</b>" in page and "in the document" in page
    done = alice.post(
        f"{cloud.url}/jobs/{sub.uuid}/release",
        data={"csrf_token": csrf_of(page), "printer": "printer1", "color": "monochrome"},
        timeout=10,
    )
    assert flashes(done.text) == ["Released 'report.pdf' to printer1."]


def test_sign_in_offers_sso_only_when_oidc_is_configured(
    cloud: CloudServer, tmp_path: Path
) -> None:
    plain = requests.get(f"{cloud.url}/signin", timeout=10).text
    assert "Sign in with SSO" not in plain
    oidc = check_oidc(
        OidcConfig(
            issuer="https://127.0.0.1:9/realms/staff",  # never contacted: the page only links
            client_id="pullprint",
            client_secret="secret",
            redirect_uri="https://127.0.0.1:9/api/v1/sso/callback",
        )
    )
    env = make_env(tmp_path / "sso", oidc=oidc)
    try:
        with Served(env.app) as served:
            page = requests.get(f"{served.base}/signin", timeout=10).text
    finally:
        env.cloud.engine.dispose()
    assert '<a class="sso button secondary" href="/api/v1/sso/login">Sign in with SSO</a>' in page


def held_jobs(
    cloud: CloudServer, doc: Path, n: int, owner: str = "alice", upload: bool = True
) -> list[str]:
    """Register ``n`` one-page jobs of ``owner`` through node1 (with ``doc`` uploaded unless
    ``upload`` is false); their uuids, oldest first."""
    uuids = []
    with cloud.node_client("node1") as node:
        for _ in range(n):
            sub = submission(doc, owner=owner, origin="node1", pages=1, copies=1)
            node.register(sub)
            if upload:
                node.upload_document(sub.uuid, doc)
            uuids.append(sub.uuid)
    return uuids


def test_a_long_queue_shows_the_newest_jobs_and_says_how_many_more_wait(
    cloud: CloudServer, tmp_path: Path
) -> None:
    """A person with more held jobs than a page shows (WAITING_SHOWN) sees the newest, the
    count of all of them and how many older ones are not shown; "Print all" at a kiosk prints
    every one of them, shown or not."""
    uuids = held_jobs(cloud, make_pdf(tmp_path / "one.pdf", 1), WAITING_SHOWN + 3)
    newest, oldest = uuids[-WAITING_SHOWN:], uuids[:3]
    alice = sign_in(cloud)
    note = f"3 older jobs not shown: the newest {WAITING_SHOWN} are here"
    for path in ("/", "/p/printer1"):
        text = alice.get(cloud.url + path, timeout=30).text
        shown = re.findall(r'id="job-([0-9a-f-]+)"', text)
        assert shown == newest[::-1], path  # newest first, each once
        assert note in text, path
    assert f"{WAITING_SHOWN + 3} waiting" in alice.get(cloud.url + "/", timeout=30).text
    terminal = add_terminal(cloud.url, cloud.admin_token, "hall", "printer1", ["username"])
    kiosk = requests.Session()
    page = kiosk.get(f"{cloud.url}/kiosk?terminal={terminal}", timeout=10)
    page = kiosk_post(kiosk, cloud.url, page.text, method="username", user="alice")
    assert f"Print all {WAITING_SHOWN + 3}</button>" in page.text and note in page.text
    assert not any(f'id="job-{uuid}"' in page.text for uuid in oldest)
    page = kiosk_post(kiosk, cloud.url, page.text, action="release-all")
    assert flashes(page.text) == [f"{WAITING_SHOWN + 3} job(s) printing on printer1."]
    with cloud.admin_client() as admin:
        assert {admin.get_job(uuid).state for uuid in oldest} == {JobState.RELEASED}
    queue = alice.get(cloud.url + "/", timeout=30).text
    assert "older jobs not shown" not in queue and "0 waiting" in queue


def test_a_long_history_shows_the_newest_print_outs_and_the_csv_holds_all(
    cloud: CloudServer, tmp_path: Path
) -> None:
    """A person with more print-outs than the history page shows (HISTORY_SHOWN) sees the
    newest, newest first, and how many older ones are left out; /history.csv holds every one
    of theirs and no one else's, and only for someone signed in."""
    doc = make_pdf(tmp_path / "one.pdf", 1)
    uuids = held_jobs(cloud, doc, HISTORY_SHOWN + 3, upload=False)
    held_jobs(cloud, doc, 1, owner="bob", upload=False)
    alice = sign_in(cloud)
    page = alice.get(cloud.url + "/history", timeout=30).text
    shown = re.findall(r'<tr id="tx-([0-9a-f-]+)">', page)
    assert shown == uuids[-HISTORY_SHOWN:][::-1]  # newest first, each once
    assert f"3 older print-outs not shown: the newest {HISTORY_SHOWN} are here" in page
    csv = alice.get(cloud.url + "/history.csv", timeout=30)
    assert csv.headers["content-type"].startswith("text/csv")
    assert 'filename="history.csv"' in csv.headers["content-disposition"]
    lines = csv.text.splitlines()
    assert lines[0].startswith("transaction_id,job_uuid,user,")
    assert [line.split(",")[1] for line in lines[1:]] == uuids  # all of them, oldest first
    assert {line.split(",")[2] for line in lines[1:]} == {"alice"}
    bob = sign_in(cloud, "bob").get(cloud.url + "/history", timeout=30).text
    assert len(re.findall(r'<tr id="tx-', bob)) == 1 and "older print-out" not in bob
    stranger = requests.get(cloud.url + "/history.csv", allow_redirects=False, timeout=10)
    assert stranger.status_code == 303 and "/signin" in stranger.headers["location"]
