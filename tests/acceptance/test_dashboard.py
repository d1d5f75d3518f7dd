"""The live dashboard in a real headless browser, against the service with the fake engine.

Needs Debian's ``chromium`` and ``chromium-driver``; without them the test fails
(`make test` installs both), it does not skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException, TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.acceptance.conftest import TOKEN, Service, start_service
from tests.conftest import write_wav
from vramscribe.devices.shared_fake import SharedFakeDevice

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_S = 90.0

T = TypeVar("T")


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"the dashboard test needs Debian's headless chromium; missing {', '.join(missing)}"
            " (apt-get install chromium chromium-driver)",
            pytrace=False,
        )
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not go looking online
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1150",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = ChromeService(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def fake_service(tmp_path: Path, services: list[Service]) -> Service:
    """A fake GPU with room for one instance next to a neighbour: a second job must wait."""
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=3000, foreign_mb=700)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 2.0, "load_s": 2.0}
    # A short keep-alive: the page shows memory coming back without a minute's wait.
    svc = start_service(tmp_path, "--device", f"fake:{gpu.path}", "--model", "small",
                        "--keep-alive", "1", fake=cfg)  # fmt: skip
    services.append(svc)
    return svc


def submit(svc: Service, wav: Path) -> str:
    with svc.client() as c, wav.open("rb") as fh:
        r = c.post("/v1/jobs", files={"file": (wav.name, fh, "audio/wav")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def wait_for(
    driver: WebDriver, what: str, check: Callable[[], T | None], timeout: float = WAIT_S
) -> T:
    """Poll ``check`` until it returns something truthy; fail with the page's state if not."""

    def probe(_: WebDriver) -> T | Literal[False]:
        try:
            return check() or False
        except JavascriptException:
            return False

    try:
        result = WebDriverWait(driver, timeout, poll_frequency=0.1).until(probe)
    except TimeoutException:
        shot = screenshot(driver, "timeout")
        state = js(driver, "return document.body.innerText")
        raise AssertionError(f"timed out waiting for {what}; page ({shot}):\n{state}") from None
    return result


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    return path


def job_row(driver: WebDriver, section: str, job_id: str) -> dict[str, Any] | None:
    """The row of ``job_id`` in section ``section`` as plain data, or None if it is not there."""
    row: dict[str, Any] | None = js(
        driver,
        """
        const row = document.querySelector(`#${arguments[0]} [data-job-id="${arguments[1]}"]`);
        if (!row) return null;
        const bar = row.querySelector('.progress');
        return {
          status: row.dataset.status,
          text: row.innerText,
          progress: bar ? Number(bar.dataset.progress) : null,
          reason: row.querySelector('.reason')?.textContent ?? null,
          links: [...row.querySelectorAll('a[data-format]')].map(a => a.href),
        };
        """,
        section,
        job_id,
    )
    return row


def completed_row(driver: WebDriver, job_id: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        row = job_row(driver, "recent", job_id)
        return row if row is not None and row["status"] == "completed" else None

    return check


def ours_mb(driver: WebDriver) -> float | None:
    value = js(
        driver,
        "return document.querySelector('#devices .membar [data-segment=\"ours\"]')?.dataset.mb",
    )
    return None if value is None else float(value)


def connection(driver: WebDriver) -> tuple[str, str]:
    state, text = js(
        driver,
        "const c = document.getElementById('connection'); return [c.dataset.state, c.innerText];",
    )
    return str(state), str(text)


def assert_only_local_requests(driver: WebDriver, svc: Service) -> None:
    urls: list[str] = js(driver, "return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [u for u in urls if not u.startswith(svc.url)]
    assert outside == [], f"the page loaded something from elsewhere: {outside}"


def assert_no_script_errors(driver: WebDriver) -> None:
    logs: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [e["message"] for e in logs if "Uncaught" in e["message"]]
    assert errors == [], errors


def test_dashboard_explains_a_missing_or_wrong_token(
    tmp_path: Path, services: list[Service], browser: WebDriver
) -> None:
    svc = fake_service(tmp_path, services)

    browser.get(f"{svc.url}/")
    msg = browser.find_element("id", "auth-message")
    wait_for(browser, "the missing-token message", lambda: msg.is_displayed() and msg.text)
    assert "token" in msg.text and msg.get_attribute("data-reason") == "missing", msg.text
    assert browser.find_element("id", "token-input").is_displayed()
    assert not browser.find_element("id", "board").is_displayed()
    assert connection(browser)[0] == "auth"
    screenshot(browser, "auth-missing")

    browser.get(f"{svc.url}/?token=not-the-token")
    wait_for(
        browser,
        "the wrong-token message",
        lambda: "wrong token" in browser.find_element("id", "auth-message").text,
    )
    assert browser.find_element("id", "auth-message").get_attribute("data-reason") == "wrong"
    screenshot(browser, "auth-wrong")

    # The form recovers from a wrong token; the right one is remembered for the next visit.
    browser.find_element("id", "token-input").send_keys(TOKEN)
    browser.find_element("css selector", "#token-form button").click()
    wait_for(browser, "the live board", lambda: connection(browser)[0] == "live")
    assert browser.find_element("id", "board").is_displayed()
    assert "token=" not in browser.current_url
    browser.get(f"{svc.url}/")
    wait_for(
        browser, "the live board from the stored token", lambda: connection(browser)[0] == "live"
    )
    assert not browser.find_element("id", "auth").is_displayed()
    assert_only_local_requests(browser, svc)
    assert_no_script_errors(browser)


def test_dashboard_follows_jobs_live_and_recovers_after_a_restart(
    tmp_path: Path, services: list[Service], browser: WebDriver
) -> None:
    svc = fake_service(tmp_path, services)
    browser.get(f"{svc.url}/?token={TOKEN}")
    wait_for(browser, "the live board", lambda: connection(browser)[0] == "live")
    wait_for(browser, "the device bar", lambda: ours_mb(browser) is not None)
    assert ours_mb(browser) == 0
    queue = browser.find_element("id", "queue")
    wait_for(browser, "an empty queue", lambda: "queue is empty" in queue.text)

    first = submit(svc, write_wav(tmp_path / "in" / "first.wav", 10.0))
    second = submit(svc, write_wav(tmp_path / "in" / "second.wav", 10.0))

    # The first job is admitted; the second waits for memory, with the scheduler's reason.
    seen = wait_for(
        browser,
        "the first job pending or loading",
        lambda: (
            job_row(browser, "queue", first)
            or ((row := job_row(browser, "running", first)) and row["status"] == "loading" and row)
        ),
    )
    assert seen["status"] in ("pending", "loading"), seen
    queued = wait_for(
        browser,
        "the second job queued with a reason",
        lambda: (row := job_row(browser, "queue", second)) and row["reason"] != "queued" and row,
    )
    assert queued["status"] == "pending" and "memory" in queued["reason"], queued

    running = wait_for(
        browser,
        "the first job running with progress",
        lambda: (
            (row := job_row(browser, "running", first))
            and row["status"] == "processing"
            and row["progress"] >= 0.3
            and row
        ),
    )
    assert first[:8] in running["text"] and "%" in running["text"], running
    assert wait_for(browser, "our memory in the device bar", lambda: ours_mb(browser)) >= 1000
    screenshot(browser, "running")

    for job_id in (first, second):
        done = wait_for(browser, f"job {job_id} completed", completed_row(browser, job_id))
        assert len(done["links"]) == 4, done
    txt = next(u for u in done["links"] if "format=txt" in u)
    assert httpx.get(txt, timeout=30).text.startswith("fake segment 1")
    wait_for(browser, "our memory back to zero", lambda: ours_mb(browser) == 0)
    wait_for(browser, "an empty running list", lambda: job_row(browser, "running", first) is None)
    total_s = wait_for(
        browser,
        "completed audio in the throughput chart",
        lambda: (
            float(js(browser, "return document.getElementById('throughput').dataset.totalS"))
            or None
        ),
    )
    assert total_s == pytest.approx(20.0, abs=0.5)
    screenshot(browser, "completed")

    # Restart the service under the page: it says so, keeps trying, and catches up after.
    svc.kill9()
    wait_for(browser, "the reconnecting state", lambda: connection(browser)[0] == "reconnecting")
    assert connection(browser)[1] == "reconnecting…"
    assert job_row(browser, "recent", first) is not None  # the last known state stays visible
    screenshot(browser, "reconnecting")
    svc.restart()
    third = submit(svc, write_wav(tmp_path / "in" / "third.wav", 4.0))
    wait_for(browser, "the live state again", lambda: connection(browser)[0] == "live")
    for job_id in (first, second, third):
        wait_for(
            browser, f"job {job_id} completed after the restart", completed_row(browser, job_id)
        )
    wait_for(browser, "our memory back to zero after the restart", lambda: ours_mb(browser) == 0)
    with svc.client() as c:
        assert c.get("/v1/jobs", params={"status": "completed"}).json()["total"] == 3
    screenshot(browser, "recovered")
    assert_only_local_requests(browser, svc)
    assert_no_script_errors(browser)


def test_dashboard_html_is_self_contained() -> None:
    """No fetched scripts, styles or fonts: the service may run where nothing else is reachable."""
    html = (
        Path(__file__).resolve().parents[2] / "src/vramscribe/service/static/dashboard.html"
    ).read_text()
    for needle in ("<script src", "<link", "@import", "url(", "http://", "https://"):
        assert needle not in html, needle
    assert "reconnecting…" in html


def test_dashboard_and_devices_show_the_limits_serve_was_given(
    tmp_path: Path, services: list[Service], browser: WebDriver
) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8192)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 50.0}
    svc = start_service(tmp_path, "--device", f"fake:{gpu.path}", "--model", "small",
                        "--memory-limit", "fake:0=2GiB", "--reserve", "fake:0=512MiB",
                        fake=cfg)  # fmt: skip
    services.append(svc)
    with svc.client() as c:
        [device] = wait_for(browser, "a device reading",
                            lambda: c.get("/v1/devices").json()["devices"])  # fmt: skip
    assert device["memory_limit_bytes"] == 2 * 1024**3
    assert device["reserve_bytes"] == 512 * 1024**2
    browser.get(f"{svc.url}/?token={TOKEN}")
    note = wait_for(
        browser,
        "the device's limits",
        lambda: js(browser, "return document.querySelector('#devices [data-limits]')?.innerText"),
    )
    assert note == "ours at most 2.0 GiB · 0.5 GiB left to others"
    screenshot(browser, "limits")
    assert_no_script_errors(browser)
