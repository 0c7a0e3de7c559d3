"""The /ops page in a real browser (Debian's chromium, driven through its chromedriver by selenium): sign-in, the
figures against `newsflow status --json` on a quiet system holding queued, failed, rejected and stored drops, a
reader key that cannot replay, and an operator's replay button bringing a failed drop back stored. A screenshot
of the page is saved (its path is printed) for a person to look at."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from shared.db import transaction
from shared.intake import read_file, register_reads
from shared.models import Drop
from shared.records import DropStatus
from tests.support import ROOT, TestServers, new_key, newsflow, running_api, unavailable

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Flags for a closed network and a root user (the machine notes list them): no sandbox, no background calls home.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1600")
SCREENSHOTS = ROOT / ".newsflow" / "test-artifacts"
WIKINEWS = sorted((ROOT / "tests" / "data" / "wikinews").glob("*.txt"))
BINARY = ROOT / "seeds" / "109_binary.bin"
WAIT_S = 30


@pytest.fixture
def browser() -> Iterator[object]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        unavailable(f"needs Debian's chromium and chromium-driver ({', '.join(missing)} missing)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="newsflow-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def seed_quiet_system(pipeline: TestServers, sessions, tmp_path: Path) -> int:
    """3 stored drops, 2 queued (picked up, their lease long: nothing will move them), 1 rejected and 1 failed
    with its bytes kept; returns the failed drop's id."""
    stored = tmp_path / "stored"
    stored.mkdir()
    for path in WIKINEWS[:3]:
        (stored / path.name).write_bytes(path.read_bytes())
    assert newsflow(pipeline.env, "ingest", str(stored), "--wait", "--workers", "0").returncode == 0
    held = [WIKINEWS[3], WIKINEWS[4], WIKINEWS[5], BINARY]
    with transaction(sessions) as session:
        register_reads(session, [read_file(p, 1 << 20) for p in held], host="test", max_bytes=1 << 20)
        ids = {Path(path).name: drop_id for path, drop_id in session.execute(
            select(Drop.path, Drop.id).where(Drop.status == DropStatus.QUEUED))}
        session.execute(text("""UPDATE drops SET stage = 'parse', sent_at = now() - interval '90 seconds',
                                picked_at = now(), lease_expires_at = now() + interval '1 hour'
                                WHERE id = ANY(:ids)"""), {"ids": [ids[WIKINEWS[3].name], ids[WIKINEWS[4].name]]})
        session.execute(text("""UPDATE drops SET status = 'failed', reason = 'error', stage = NULL,
                                detail = 'worker lost (made by the test)', finished_at = now() WHERE id = :id"""),
                        {"id": ids[WIKINEWS[5].name]})
        session.execute(text("""UPDATE drops SET status = 'rejected', reason = 'not_text', stage = NULL,
                                detail = 'binary (made by the test)', finished_at = now() WHERE id = :id"""),
                        {"id": ids[BINARY.name]})
    return ids[WIKINEWS[5].name]


def drop_status(sessions, drop_id: int) -> DropStatus:
    with sessions() as session:
        return session.execute(select(Drop.status).where(Drop.id == drop_id)).scalar_one()


def cell(driver, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text.strip()


def press(driver, button) -> None:
    """Click a form's button and wait for the page it leads to (a click does not wait for the navigation)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def left_behind(_) -> bool:
        """The button is no longer in the page. Mid-navigation Chrome sometimes says so with an inspector error
        ("Node with given id does not belong to the document") instead of a stale element, which selenium's
        staleness_of lets through (one CI run failed on it)."""
        try:
            button.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" not in str(e):
                raise
            return True
        return False

    button.click()
    WebDriverWait(driver, WAIT_S).until(left_behind)


def sign_in(driver, base: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ops")
    driver.find_element(By.ID, "key").send_keys(key)
    press(driver, driver.find_element(By.ID, "sign-in"))


def check_against_status(driver, status: dict) -> None:
    for name, stage in status["stages"].items():
        row = f"#stage-{name}"
        assert cell(driver, f"{row} [data-field=unfinished]") == str(stage["unfinished"])
        assert cell(driver, f"{row} [data-field=depth]") == ("–" if stage["depth"] is None else str(stage["depth"]))
        assert cell(driver, f"{row} [data-field=consumers]") == str(stage["consumers"])
        shown = driver.find_element("css selector", f"{row} [data-field=oldest_age_s]").get_attribute("data-value")
        if stage["oldest_age_s"] is None:
            assert shown == ""
        else:  # the page and the command read the clock a moment apart
            assert abs(float(shown) - stage["oldest_age_s"]) < 15
    for state in ("queued", "stored", "duplicate", "rejected", "failed"):
        assert cell(driver, f"#totals [data-field={state}]") == str(status["totals"]["drops"].get(state, 0))
    assert cell(driver, "#totals [data-field=articles]") == str(status["totals"]["articles"])
    assert cell(driver, "#workers-count") == f"{len(status['workers'])} online"
    for state, reasons in status["replay_backlog"].items():
        for reason, count in reasons.items():
            assert cell(driver, f"#failure-{state}-{reason} [data-field=count]") == str(count)


def status_json(env: dict[str, str]) -> dict:
    done = newsflow(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ops_page_in_a_browser(pipeline: TestServers, clean_db: None, sessions, tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    failed_id = seed_quiet_system(pipeline, sessions, tmp_path)
    operator, reader = new_key(pipeline.env, "operator", "ops-page"), new_key(pipeline.env, "reader", "ops-reader")
    with running_api(pipeline) as base:
        driver.get(f"{base}/ops")
        assert driver.find_elements(By.ID, "sign-in"), "no key yet: the sign-in form"
        sign_in(driver, base, "nf_not-a-key")
        assert "unknown or revoked key" in cell(driver, "#sign-in-error")

        sign_in(driver, base, reader)
        assert cell(driver, "#who") == "ops-reader"
        assert driver.get_cookie("newsflow_ops_key")["httpOnly"] is True
        assert driver.execute_script("return document.cookie") == "", "the key is out of the page's scripts' reach"
        status = status_json(pipeline.env)
        driver.refresh()
        check_against_status(driver, status)
        assert status["stages"]["parse"]["unfinished"] == 2 and status["totals"]["drops"]["stored"] == 3
        assert driver.find_elements(By.ID, "read-only") and not driver.find_elements(By.CSS_SELECTOR, "button.replay")
        refused = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/ops/replay', {method: 'POST', body: new URLSearchParams({status: 'failed', reason: 'error'})})
              .then(r => done(r.status));""")
        assert refused == 403, "a reader's key cannot replay, even with a hand-made request"

        press(driver, driver.find_element(By.ID, "sign-out"))
        assert driver.find_elements(By.ID, "sign-in")
        sign_in(driver, base, operator)
        assert cell(driver, "#who") == "ops-page"
        check_against_status(driver, status_json(pipeline.env))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / "ops-page.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot of /ops: {shot}")

        press(driver, driver.find_element(By.CSS_SELECTOR, "#failure-failed-error button.replay"))
        assert "Replayed 1 drop." in cell(driver, "#replay-notice")
        deadline = time.monotonic() + WAIT_S
        while (state := drop_status(sessions, failed_id)) is not DropStatus.STORED:
            assert time.monotonic() < deadline, f"the replayed drop is {state}"
            time.sleep(0.2)
        driver.get(f"{base}/ops")  # the page as it is now the drop is stored
        assert not driver.find_elements(By.ID, "failure-failed-error")
        assert cell(driver, "#totals [data-field=stored]") == "4"
        assert driver.find_elements(By.ID, "failure-rejected-not_text"), "the rejected drop still awaits replay"
    with sessions() as session:
        actions = session.execute(text("SELECT key_name, action FROM operator_actions")).all()
    assert actions == [("ops-page", "replay")]
