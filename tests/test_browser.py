"""The dashboard and the report in a real browser: headless Chromium draws every plot.

Runs where Debian's ``chromium`` and ``chromium-driver`` are installed (``.ci/run``
installs them); elsewhere it is skipped with the reason. Screenshots land in the test's
temporary folder, or in ``$GROKFORECAST_SCREENSHOTS`` when that is set (the README's
screenshot is made this way).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from grokforecast.backends.optuna.workers import run_worker
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.study import create_study
from studies import GROKFORECAST, study_text, write_study

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install)"
)
NAME = "browser"
#: Plots each page draws: the study's; a pruned trial's curves; a kept trial's curves and
#: the four views inside it; the report's, before the views inside its highlighted trials.
PLOTS = {"study": 5, "pruned trial": 1, "kept trial": 5, "report": 5}
INSIDE = ("inside-representation", "inside-fourier", "inside-landscape", "inside-norms")


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'browser.db'}"
    # Two pruned trials, then two that grok and two more run to the end (every figure has data).
    for n_trials, threshold in ((2, 1.0), (6, 0.0)):
        # Checkpoints and the kept trials' snapshots in the test's folder, by absolute path.
        top = f'checkpoint_dir = "{folder / "checkpoints"}"'
        text = study_text(NAME, n_trials=n_trials, threshold=threshold, full_steps=400, top=top)
        path = write_study(folder, text.replace("high = 1e-2", "high = 5e-2"), f"{threshold}.toml")
        study = create_study(SweepPlan.load(path, url))
        if threshold == 0.0:
            for fraction in (0.7, 0.8):  # these grok near step 290
                study.enqueue_trial({"lr": 3e-2, "weight_decay": 1.0, "data_fraction": fraction})
        run_worker(SweepPlan.load(path, url))
    return url


@pytest.fixture(scope="module")
def dashboard(storage_url: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*GROKFORECAST, "dashboard", "--storage", storage_url, "--port", str(port), "--refresh", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"dashboard did not start: {server.stderr.read().decode() if server.stderr else ''}")
        yield base
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1300,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("GROKFORECAST_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _drawn(driver, expected_plots: int, screenshot: Path) -> None:
    """Wait until the page drew its plots, then check them and the console, and save a picture."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= expected_plots
    )
    plots = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    assert len(plots) == expected_plots
    for plot in plots:  # each plot drew marks: heat-map cells, lines, bars or points
        marks = plot.find_elements(
            By.CSS_SELECTOR, ".heatmaplayer image, .scatterlayer path, .barlayer path, canvas"
        )
        assert marks, f"plot {plot.get_attribute('id')} is empty"
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    driver.save_screenshot(str(screenshot))


def test_the_dashboard_draws_the_study_and_trial_pages_and_updates_live(
    dashboard: str, storage_url: str, browser, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{dashboard}/")
    browser.find_element(By.LINK_TEXT, NAME).click()
    _drawn(browser, PLOTS["study"], screenshots / "dashboard-study.png")
    rows = len(browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr"))
    assert rows == 6

    # A trial joins the study while the page is open: the page shows it without a reload.
    optuna.load_study(study_name=NAME, storage=storage_url).enqueue_trial(
        {"lr": 2e-3, "weight_decay": 0.5, "data_fraction": 0.5}
    )
    WebDriverWait(browser, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == 7)
    _drawn(browser, PLOTS["study"], screenshots / "dashboard-study-updated.png")

    browser.find_element(By.LINK_TEXT, "1").click()
    _drawn(browser, PLOTS["pruned trial"], screenshots / "dashboard-trial.png")
    assert "P(grok)" in browser.page_source and "log_activity" in browser.page_source
    assert "No snapshots of this trial" in browser.page_source  # pruned at its probe

    browser.back()
    browser.find_element(By.LINK_TEXT, "2").click()  # kept, and grokked
    _drawn(browser, PLOTS["kept trial"], screenshots / "dashboard-trial-inside.png")
    for figure in INSIDE:
        assert browser.find_element(By.ID, figure).is_displayed()


def test_the_report_file_draws_offline(storage_url: str, browser, screenshots: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    subprocess.run([*GROKFORECAST, "report", NAME, "--storage", storage_url, "-o", str(report)], check=True)
    browser.get(report.as_uri())
    page = browser.page_source
    assert "a grokking trial" in page and "a kept trial that did not grok" in page
    _drawn(browser, PLOTS["report"] + 2 * len(INSIDE), screenshots / "report.png")
