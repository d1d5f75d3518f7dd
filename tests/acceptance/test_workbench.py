"""The dashboard as a workbench, in a real headless chromium: submit, cancel, retry, listen.

Screenshots go to ``test-artifacts/workbench-*.png`` (ignored by git), like the
dashboard test's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.acceptance import test_dashboard
from tests.acceptance.conftest import TOKEN, Service, start_service
from tests.acceptance.test_dashboard import (
    assert_no_script_errors,
    assert_only_local_requests,
    completed_row,
    connection,
    fake_service,
    job_row,
    js,
    ours_mb,
    screenshot,
    wait_for,
)
from tests.conftest import SPEECH_AUDIO, write_wav
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.wer import word_error_rate

browser = test_dashboard.browser  # the same headless chromium fixture
JFK = json.loads((SPEECH_AUDIO / "references.json").read_text())["jfk.flac"]["text"]


def drop_file(driver: WebDriver, path: Path, mime: str, target: str = "dropzone") -> None:
    """Drop ``path`` on the element ``target``, as a file dragged from the desktop arrives."""
    js(
        driver,
        """
        const bytes = Uint8Array.from(atob(arguments[1]), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], arguments[0], { type: arguments[2] }));
        const zone = document.getElementById(arguments[3]);
        for (const type of ['dragenter', 'dragover', 'drop']) {
          const init = { dataTransfer: dt, bubbles: true, cancelable: true };
          zone.dispatchEvent(new DragEvent(type, init));
        }
        """,
        path.name,
        base64.b64encode(path.read_bytes()).decode(),
        mime,
        target,
    )


def submitted_id(driver: WebDriver, name: str) -> str:
    """The job id the page reports for the submission named ``name``."""

    def check() -> str | None:
        note = js(
            driver,
            """const li = [...document.querySelectorAll('#submissions li')]
                 .find((li) => li.dataset.name === arguments[0]);
               return li ? [li.dataset.state, li.dataset.jobId || '', li.innerText] : null;""",
            name,
        )
        if note is None:
            return None
        assert note[0] == "ok", note
        return str(note[1])

    return wait_for(driver, f"the page to submit {name}", check)


def click_action(driver: WebDriver, section: str, job_id: str, action: str) -> None:
    button = driver.find_element(
        "css selector", f'#{section} [data-job-id="{job_id}"] button[data-action="{action}"]'
    )
    button.click()


def open_live(driver: WebDriver, svc: Service) -> None:
    driver.get(f"{svc.url}/?token={TOKEN}")
    wait_for(driver, "the live board", lambda: connection(driver)[0] == "live")


@pytest.mark.slow
def test_a_dropped_file_is_transcribed_and_its_segments_play_the_audio(
    tmp_path: Path, services: list[Service], browser: WebDriver
) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    shutil.copy(SPEECH_AUDIO / "hotwords.mp3", served / "hotwords.mp3")
    svc = start_service(tmp_path, "--device", "cpu", "--model", "tiny.en",
                        "--allowed-root", str(served))  # fmt: skip
    services.append(svc)
    open_live(browser, svc)
    model = "return document.getElementById('opt-model').value"
    assert wait_for(browser, "the default model", lambda: js(browser, model)) == "tiny.en"
    assert browser.find_element("id", "path-row").is_displayed()

    browser.find_element("css selector", '#opt-formats input[value="vtt"]').click()  # not wanted
    drop_file(browser, SPEECH_AUDIO / "jfk.flac", "audio/flac")
    jfk = submitted_id(browser, "jfk.flac")
    browser.find_element("id", "server-path").send_keys(str(served / "hotwords.mp3"))
    browser.find_element("id", "path-submit").click()
    by_path = submitted_id(browser, str(served / "hotwords.mp3"))
    screenshot(browser, "workbench-submitted")

    for job_id in (jfk, by_path):
        done = wait_for(browser, f"job {job_id} completed", completed_row(browser, job_id), 300)
    jfk_row = wait_for(browser, "jfk completed", completed_row(browser, jfk))
    assert sorted(u.split("format=")[1].split("&")[0] for u in jfk_row["links"]) == [
        "json", "srt", "txt",
    ]  # fmt: skip
    assert len(done["links"]) == 3

    click_action(browser, "recent", jfk, "open")
    lines = wait_for(
        browser,
        "the transcript's segments",
        lambda: js(
            browser,
            """return [...document.querySelectorAll('#segments li')]
                                 .map((li) => [Number(li.dataset.start), li.innerText]);""",
        ),
    )
    assert word_error_rate(JFK, " ".join(text.split("]", 1)[1] for _, text in lines)) == 0.0
    assert all(text.startswith("[00:") for _, text in lines)
    wait_for(
        browser,
        "the audio's metadata",
        lambda: js(browser, "return document.getElementById('player').readyState >= 1"),
    )
    target = max(range(len(lines)), key=lambda i: lines[i][0])  # the latest segment
    start = lines[target][0]
    assert start > 2.0, lines
    browser.find_elements("css selector", "#segments li")[target].click()
    seeked = wait_for(
        browser,
        "the player to seek to the segment",
        lambda: js(
            browser,
            """const p = document.getElementById('player');
               return !p.seeking && p.currentTime >= arguments[0] - 0.05
                 && p.seekable.length > 0 && [p.currentTime, p.seekable.end(0)];""",
            start,
        ),
    )
    assert start - 0.05 <= seeked[0] <= start + 3 and seeked[1] >= 10.9
    active = js(browser, "return document.querySelector('#segments li.active')?.dataset.index")
    assert active == str(target)
    screenshot(browser, "workbench-transcript")
    assert_only_local_requests(browser, svc)
    assert_no_script_errors(browser)

    # The audio URL works without the token, for that job only, in ranges, until it expires.
    with svc.client() as c:
        url = c.get(f"/v1/jobs/{jfk}/audio-url").json()["url"]
    size = (SPEECH_AUDIO / "jfk.flac").stat().st_size
    part = httpx.get(svc.url + url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == (SPEECH_AUDIO / "jfk.flac").read_bytes()[100:200]
    other = url.replace(jfk, by_path)
    assert httpx.get(svc.url + other, timeout=30).status_code == 403
    past = int(time.time()) - 10
    sig = hmac.new(TOKEN.encode(), f"{jfk}:{past}".encode(), hashlib.sha256).hexdigest()
    expired = httpx.get(f"{svc.url}/v1/jobs/{jfk}/audio?expires={past}&sig={sig}", timeout=30)
    assert expired.status_code == 403 and "expired" in expired.text


def test_cancel_from_the_page_frees_the_memory_and_retry_runs_it_again(
    tmp_path: Path, services: list[Service], browser: WebDriver
) -> None:
    svc = fake_service(tmp_path, services)
    gpu = SharedFakeDevice(tmp_path / "gpu.json")
    open_live(browser, svc)
    drop_file(browser, write_wav(tmp_path / "in" / "first.wav", 30.0), "audio/wav")
    first = submitted_id(browser, "first.wav")
    # Dropped beside the drop zone (on the devices card): taken all the same.
    drop_file(browser, write_wav(tmp_path / "in" / "second.wav", 10.0), "audio/wav", "devices")
    second = submitted_id(browser, "second.wav")

    wait_for(
        browser,
        "the first job running",
        lambda: (row := job_row(browser, "running", first)) and row["status"] == "processing",
    )
    wait_for(browser, "the second job waiting", lambda: job_row(browser, "queue", second))
    assert wait_for(browser, "our memory on the device", lambda: ours_mb(browser)) >= 1000
    with svc.client() as c:
        assert c.get("/v1/jobs").json()["total"] == 2  # each drop submitted once
    screenshot(browser, "workbench-before-cancel")

    click_action(browser, "queue", second, "cancel")

    def second_cancelled() -> dict[str, Any] | None:
        row = job_row(browser, "recent", second)
        return row if row is not None and row["status"] == "cancelled" else None

    cancelled = wait_for(browser, "the waiting job cancelled", second_cancelled)
    assert "cancelled by client" in cancelled["text"]
    click_action(browser, "running", first, "cancel")
    wait_for(browser, "the running job cancelled", lambda: (
        (row := job_row(browser, "recent", first)) and row["status"] == "cancelled"))  # fmt: skip
    wait_for(browser, "our memory back to zero", lambda: ours_mb(browser) == 0)
    assert gpu.true_state().used_mb == pytest.approx(
        700, abs=1
    )  # only the neighbour's memory is in use
    screenshot(browser, "workbench-cancelled")

    click_action(browser, "recent", second, "retry")
    again = wait_for(
        browser,
        "the retry's new job",
        lambda: js(
            browser,
            """return [...document.querySelectorAll('#submissions li')]
                   .find((li) => li.dataset.name.startsWith('retry of'))?.dataset.jobId""",
        ),
    )
    assert again and again != second
    wait_for(browser, "the retried job completed", completed_row(browser, again))
    click_action(browser, "recent", first, "open")
    reason = wait_for(
        browser, "the cancelled job's reason", lambda: js(
            browser, "return document.getElementById('viewer-error')?.innerText"),
    )  # fmt: skip
    assert "cancel" in reason
    screenshot(browser, "workbench-reason")
    assert_no_script_errors(browser)


def test_a_picked_file_that_fails_shows_its_full_reason(
    tmp_path: Path, services: list[Service], browser: WebDriver
) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=3000)
    cfg = {"device_path": str(gpu.path), "memory_mb": 500, "load_s": 0.2, "fail": "load_error"}
    svc = start_service(tmp_path, "--device", f"fake:{gpu.path}", "--model", "small", fake=cfg)
    services.append(svc)
    open_live(browser, svc)
    wav = write_wav(tmp_path / "in" / "picked.wav", 5.0)
    browser.find_element("id", "file-input").send_keys(str(wav))  # the file picker's answer
    job_id = submitted_id(browser, "picked.wav")
    row = wait_for(browser, "the job failed", lambda: (
        (r := job_row(browser, "recent", job_id)) and r["status"] == "failed" and r))  # fmt: skip
    with svc.client() as c:
        error = c.get(f"/v1/jobs/{job_id}").json()["error"]
    assert "fake load failure" in error and error in row["text"]
    click_action(browser, "recent", job_id, "open")
    shown = wait_for(browser, "the failure in the viewer", lambda: js(
        browser, "return document.getElementById('viewer-error')?.innerText"))  # fmt: skip
    assert shown == error
    history = js(browser, "return document.querySelector('#viewer .history').innerText")
    assert "→ failed" in history and "fake load failure" in history
    screenshot(browser, "workbench-failed")
    assert_no_script_errors(browser)
