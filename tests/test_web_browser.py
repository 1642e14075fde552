"""The web pages in a real browser: Python Playwright driving Debian's /usr/bin/chromium
(headless), against the real stack (cupsd with the PullPrint queue, ippeveprinter, the cloud
and the node). Jobs are printed through CUPS with ``lp``. Each page is written as a screenshot
to artifacts/screenshots/ (phone width 390x844, some also at desktop width)."""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import zxingcpp
from PIL import Image
from playwright.sync_api import (
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from pullprint.cups.jobs import CupsJobState
from pullprint.model import JobState, TransactionStatus
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack
from tests.test_cloud_api import start_cloud
from tests.test_web_pages import add_terminal

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
PASSWORD = "alice-Secret-1"
FINAL = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED}

Browse = Callable[..., BrowserContext]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture
def browse(playwright: Playwright) -> Iterator[Browse]:
    """Open a fresh Chromium (its own user-data folder) with the given context options."""
    opened: list[BrowserContext] = []
    folders: list[tempfile.TemporaryDirectory[str]] = []

    def open_context(**options: object) -> BrowserContext:
        folder = tempfile.TemporaryDirectory(prefix="pullprint-chromium-")
        folders.append(folder)
        options.setdefault("viewport", PHONE)
        context = playwright.chromium.launch_persistent_context(
            folder.name,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            **options,  # type: ignore[arg-type]
        )
        context.set_default_timeout(20_000)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()
    for folder in folders:
        folder.cleanup()


def shot(page: Page, name: str, *, desktop: bool = False) -> None:
    """Write artifacts/screenshots/<name>.png (and <name>-desktop.png at desktop width)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if desktop:
        size = page.viewport_size
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
        if size:
            page.set_viewport_size(size)


def set_password(stack: Stack, user: str = "alice", password: str = PASSWORD) -> None:
    done = requests.put(
        f"{stack.cloud.url}/api/v1/users/{user}",
        json={"password": password},
        headers={"Authorization": f"Bearer {stack.cloud.admin_token}"},
        timeout=10,
    )
    assert done.status_code == 200, done.text


def print_held(
    stack: Stack, folder: Path, pages: int = 3, title: str = "Report"
) -> tuple[int, str]:
    """Print a PDF through CUPS with lp as alice; wait until it is held; (CUPS id, uuid)."""
    assert stack.cups is not None
    doc = make_pdf(folder / f"{title}.pdf", pages, title=title)
    cups_job = stack.cups.lp(doc, user="alice", title=title)
    stack.cups.wait_job(cups_job, {CupsJobState.HELD})
    return cups_job, stack.wait_cloud_job("alice", cups_job).uuid


def sign_in(page: Page, base: str, next_path: str = "/") -> None:
    page.goto(base + next_path)
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(base + next_path)


def image_loaded(page: Page, selector: str) -> bool:
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_sign_in_release_grey_two_sided_by_qr_link_and_see_the_cost(
    stack: Stack, world_dir: Path, browse: Browse
) -> None:
    set_password(stack)
    cups_job, uuid = print_held(stack, world_dir, pages=3, title="Budget")
    base = stack.cloud.url
    page = browse().new_page()

    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/signin\?next=/$"))
    shot(page, "signin", desktop=True)
    page.fill("#name", "alice")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".flash.bad")).to_have_text("wrong user name or password")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(base + "/")

    card = page.locator(f"#job-{uuid}")
    expect(card).to_be_visible()
    expect(card.locator("h3")).to_have_text("Budget")
    expect(card.locator(".facts")).to_contain_text("3 pages")
    expect(card).to_contain_text("left")
    page.wait_for_function(f"document.querySelector('#job-{uuid} img.thumb').naturalWidth > 0")
    assert image_loaded(page, f"#job-{uuid} img.thumb")
    shot(page, "queue", desktop=True)

    # At the printer: scan its QR code (the sticker is /p/printer1/qr.svg), open what it says.
    page.goto(base + "/p/printer1/qr.svg")
    sticker = Image.open(io.BytesIO(page.locator("svg").screenshot())).convert("L")
    decoded = [r.text for r in zxingcpp.read_barcodes(sticker)]
    assert decoded == [f"{base}/p/printer1"]
    page.goto(decoded[0])
    page.click("details summary")
    page.wait_for_function("document.querySelector('.qr img').naturalWidth > 0")
    expect(page.locator(".qr + p")).to_have_text(f"{base}/p/printer1")
    expect(page.locator(f"#job-{uuid}")).to_be_visible()
    shot(page, "printer-page")
    page.locator(f"#job-{uuid}").get_by_role("link", name="Change…").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{uuid}\?printer=printer1$"))
    expect(page.locator("input[name=printer][value=printer1]")).to_be_checked()

    # grey and two-sided: each choice redraws the plan and cost (the page's small script)
    page.get_by_label("grey").check()
    expect(page).to_have_url(re.compile(r"color=monochrome"))
    page.get_by_label("two-sided (book)").check()
    expect(page).to_have_url(re.compile(r"sides=two-sided-long-edge"))
    expect(page.locator("input[name=color][value=monochrome]")).to_be_checked()
    plan = page.locator("#plan")
    expect(plan).to_contain_text("print-color-mode monochrome")
    expect(plan).to_contain_text("sides two-sided-long-edge")
    expect(plan).to_contain_text("if supported, else")
    expect(page.locator("#cost")).to_have_text("0.15 EUR")
    shot(page, "release", desktop=True)
    page.click("#release-button")
    expect(page).to_have_url(base + "/")
    expect(page.locator(".flash.ok")).to_have_text("Released 'Budget' to printer1.")

    final = stack.wait_state(uuid, FINAL)
    assert final.state is JobState.COMPLETED, final.state_reason
    printed = stack.printers[0].job_log()[-1]
    assert (printed["sides"], printed["print_color_mode"]) == ("two-sided-long-edge", "monochrome")
    assert final.transaction is not None
    assert final.transaction.status is TransactionStatus.COMPLETED
    assert final.transaction.amount == Decimal("0.15")
    assert stack.cups is not None
    stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})

    # the job now shows the plan printer1's node made: ippeveprinter does grey and duplex itself
    page.goto(f"{base}/jobs/{uuid}")
    node_plan = page.locator("#node-plan")
    expect(node_plan).to_contain_text("Finishing on printer1")
    expect(node_plan.locator("tr", has_text="sides")).to_contain_text("printer")
    expect(node_plan.locator("tr", has_text="print-color-mode")).to_contain_text("monochrome")
    expect(page.locator("img.thumb")).to_have_count(0)  # the document is deleted: no picture
    shot(page, "job-printed")

    page.goto(base + "/history")
    row = page.locator(f"#tx-{uuid}")
    expect(row).to_contain_text("Completed")
    expect(row.locator("td.num")).to_have_text("0.15 EUR")
    expect(row).to_contain_text("3 impressions, 0.15 EUR (Completed)")
    shot(page, "history", desktop=True)
    page.goto(base + "/account")
    shot(page, "account")
    page.goto(base + "/printers")
    shot(page, "printers")
    page.goto(base + "/p/printer9")
    expect(page.locator(".flash.bad")).to_have_text("There is no printer printer9.")
    shot(page, "error")


def test_web_upload_with_progress_then_print_on_a_node_printer(
    stack: Stack, world_dir: Path, browse: Browse
) -> None:
    set_password(stack)
    base = stack.cloud.url
    page = browse().new_page()
    sign_in(page, base, "/upload")
    shot(page, "upload")
    doc = make_pdf(world_dir / "Poster.pdf", 2, image_kb=3000)  # large enough to show progress
    page.set_input_files("#document", str(doc))
    page.fill("#title", "Poster")
    # note every value the progress bar shows (kept in sessionStorage across the navigation)
    page.evaluate(
        """() => {
          const bar = document.getElementById('progress');
          sessionStorage.setItem('seen', '');
          new MutationObserver(() => sessionStorage.setItem(
            'seen', sessionStorage.getItem('seen') + ' ' + bar.value
          )).observe(bar, {attributes: true});
        }"""
    )
    page.click("#upload-button")
    expect(page).to_have_url(base + "/")
    expect(page.locator(".flash.ok")).to_contain_text("Uploaded 'Poster' (2 pages)")
    seen = [int(v) for v in str(page.evaluate("sessionStorage.getItem('seen')")).split()]
    assert seen and seen[-1] == 100, seen  # the bar moved to 100 % while the file went up
    with stack.admin() as admin:
        job = next(j for j in admin.list_jobs(user="alice") if j.title == "Poster")
    assert (job.origin, job.state, job.cups_job_id) == ("web", JobState.HELD, 0)

    # a plain (no-JavaScript) refusal is readable too
    page.goto(base + "/upload")
    notes = world_dir / "notes.txt"
    notes.write_text("not printable")
    page.set_input_files("#document", str(notes))
    page.click("#upload-button")
    expect(page.locator(".flash.bad")).to_have_text(
        "notes.txt: this file cannot be printed: upload a PDF, PNG or JPEG file"
    )
    shot(page, "upload-error")

    page.goto(base + "/p/printer1")
    page.locator(f"#job-{job.uuid}").get_by_role("button", name="Print here").click()
    expect(page.locator(".flash.ok")).to_have_text("Released 'Poster' to printer1.")
    final = stack.wait_state(job.uuid, FINAL)
    assert final.state is JobState.COMPLETED, final.state_reason
    assert final.impressions == 2


def test_terminal_release_by_card_number(stack: Stack, world_dir: Path, browse: Browse) -> None:
    url = stack.cloud.url
    token = add_terminal(
        url, stack.cloud.admin_token, "lobby", "printer1", ["card", "pin"], {"alice": "04A1B2C3"}
    )
    _cups_job, uuid = print_held(stack, world_dir, pages=2, title="Handout")
    page = browse().new_page()
    page.goto(f"{url}/kiosk")
    expect(page.locator("h1")).to_have_text("Set up this terminal")
    shot(page, "kiosk-setup")
    page.goto(f"{url}/kiosk?terminal={token}")
    expect(page).to_have_url(f"{url}/kiosk")
    expect(page.locator("#card")).to_be_focused()
    shot(page, "kiosk-signin", desktop=True)
    page.keyboard.type("04A1B2C3")  # a keyboard-wedge reader types into the focused field...
    page.keyboard.press("Enter")  # ...and presses Enter
    expect(page.locator("#countdown")).to_be_visible()
    expect(page.locator(f"#job-{uuid}")).to_contain_text("Handout")
    left = int(page.locator("#countdown").inner_text())
    assert 0 < left <= 120
    page.wait_for_timeout(1500)
    assert int(page.locator("#countdown").inner_text()) < left  # it counts down
    shot(page, "kiosk-jobs", desktop=True)
    page.click("#release-all")
    expect(page.locator(".flash.ok")).to_have_text("1 job(s) printing on printer1.")
    final = stack.wait_state(uuid, FINAL)
    assert final.state is JobState.COMPLETED, final.state_reason
    assert final.released_by == "alice"
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#card")).to_be_focused()


def test_operator_cancels_in_the_cups_web_ui_and_pullprint_shows_it_canceled(
    stack: Stack, world_dir: Path, browse: Browse, operator_account: tuple[str, str]
) -> None:
    set_password(stack)
    cups_job, uuid = print_held(stack, world_dir, pages=1, title="Draft")
    assert stack.cups is not None
    name, password = operator_account
    cups = browse(
        viewport=DESKTOP, http_credentials={"username": name, "password": password}
    ).new_page()
    cups.goto(f"{stack.cups.url}/jobs/")
    row = cups.locator("tr", has_text=f"PullPrint-{cups_job}")
    expect(row).to_contain_text("held")
    shot(cups, "cups-jobs")
    row.locator("input[value='Cancel Job']").click()
    expect(cups.locator("body")).to_contain_text(f"Job {cups_job} has been canceled")
    shot(cups, "cups-canceled")

    job = stack.wait_state(uuid, {JobState.CANCELED}, timeout=15)
    assert job.transaction is not None
    assert job.transaction.status is TransactionStatus.CANCELED
    page = browse().new_page()
    sign_in(page, stack.cloud.url, "/history")
    row_pp = page.locator(f"#tx-{uuid}")
    expect(row_pp).to_contain_text("Canceled")
    expect(row_pp.locator("td.num")).to_have_text("—")
    shot(page, "history-canceled")
    page.goto(stack.cloud.url + "/")
    expect(page.locator(f"#job-{uuid}")).to_have_count(0)


def test_kiosk_signs_out_by_itself_when_the_countdown_ends(tmp_path: Path, browse: Browse) -> None:
    cloud = start_cloud(tmp_path / "cloud", "sqlite", terminal_session_seconds=3)
    try:
        token = add_terminal(
            cloud.url, cloud.admin_token, "door", "printer1", ["card"], {"bob": "555"}
        )
        page = browse().new_page()
        page.goto(f"{cloud.url}/kiosk?terminal={token}")
        expect(page).to_have_url(f"{cloud.url}/kiosk")  # the setup redirect is done
        expect(page.locator("#card")).to_be_focused()  # before the reader types
        page.keyboard.type("555")
        page.keyboard.press("Enter")
        expect(page.locator("#countdown")).to_be_visible()
        expect(page.locator("h1")).to_contain_text("0 jobs for printer1")
        # nobody touches it: the countdown reaches zero and the page signs out
        expect(page.locator("#card")).to_be_focused(timeout=10_000)
        expect(page.locator(".flash.ok")).to_have_text("Signed out.")
    finally:
        cloud.stop()
