"""The report's "Label these cells" section in a real browser: Debian's headless Chromium driven by selenium
through Debian's chromium-driver (nothing downloaded). Label 5 cells by click and 3 by key, undo one, reload,
download; the downloaded labels.csv is what train.py --labels and ensemble.py --labels accept."""

import os
import shutil
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

import ensemble
import infer
import train
from submission.data.classes import CLASSES
from submission.predict.label_page import class_keys

runner = CliRunner()
DRIVER = "/usr/bin/chromedriver"


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory):
    """One tiny run, its WBC1 logits, and the report asking for 12 cells."""
    out = tmp_path_factory.mktemp("label-page")
    common = ["--workers", "0", "--device", "cpu", "--cache-dir", str(out / "cache"), "--no-plots"]
    _ok(runner.invoke(train.app, ["--data-root", str(demo / "data"), "--runs", str(out / "runs"), "--epochs", "1",
                                  "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8", "--no-pretrained",
                                  "--min-pred-classes", "1", *common]))
    _ok(runner.invoke(infer.app, ["--runs", str(out / "runs"), "--split", "WBC1", "--no-tta", "--cache-dir",
                                  str(out / "cache"), "--submission", str(out / "w1.csv")]))
    _ok(runner.invoke(ensemble.app, ["--runs", str(out / "runs"), "--split", "WBC1", "--no-tta", "--submission",
                                     str(out / "w1.csv"), "--report", str(out / "report.html"), "--ask", "12"]))
    return out, common


def _driver(tmp_path):
    if not (shutil.which("chromium") and os.path.exists(DRIVER)):
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium or chromium-driver: .ci/run installs Debian's packages")
        pytest.skip("no chromium / chromium-driver here (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path / "downloads")})
    return driver


def _count(driver) -> int:
    return int(driver.find_element("id", "lab-count").text)


def test_label_by_click_and_key_undo_reload_download_and_use(report, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    out, common = report
    asked = pd.read_csv(out / "asked_WBC1.csv", dtype={"Image": str})
    (tmp_path / "downloads").mkdir()
    driver = _driver(tmp_path)
    try:
        driver.get((out / "report.html").as_uri())
        cells = driver.find_elements("css selector", ".lab-cell")
        assert len(cells) == 12 and all(c.find_element("tag name", "img").size["width"] >= 256 for c in cells)
        given = {}
        for i in range(5):  # 5 by click
            label = CLASSES[i]
            cells[i].find_element("css selector", f'button[data-label="{label}"]').click()
            given[cells[i].get_attribute("data-image")] = label
        keys = class_keys(list(CLASSES))
        for i, label in zip(range(5, 8), (CLASSES[9], CLASSES[10], CLASSES[3])):  # 3 by key, on the current cell
            ActionChains(driver).send_keys(keys[label]).perform()
            given[cells[i].get_attribute("data-image")] = label
        assert _count(driver) == 8
        driver.find_element("id", "lab-undo").click()  # takes back the last (cell 8)
        del given[cells[7].get_attribute("data-image")]
        assert _count(driver) == 7
        driver.refresh()
        assert _count(driver) == 7  # kept across a reload
        driver.find_element("id", "lab-download").click()
        path = tmp_path / "downloads" / "labels.csv"
        for _ in range(100):
            if path.is_file() and path.stat().st_size:
                break
            time.sleep(0.1)
    finally:
        driver.quit()
    got = pd.read_csv(path, dtype={"Image": str, "LabelID": str})
    assert list(got.columns[:4]) == ["Split", "Image", "label", "LabelID"] and set(got["Split"]) == {"WBC1"}
    assert dict(zip(got["Image"], got["label"])) == given
    assert (got["LabelID"].astype(int) == got["label"].map(CLASSES.index)).all()
    ask = asked.set_index("Image")
    assert (got.set_index("Image")["p_pick"] == ask.loc[got["Image"], "p_pick"]).all()

    result = _ok(runner.invoke(ensemble.app, ["--runs", str(out / "runs"), "--split", "WBC1", "--no-tta", "--submission",
                                              str(tmp_path / "w1.csv"), "--labels", str(path)]))
    assert "checked with 7 labels" in result
    _ok(runner.invoke(train.app, ["--labels", str(path), "--init", str(out / "runs/seed0"), "--runs", str(tmp_path / "taught"),
                                  "--epochs", "1", "--iters-per-epoch", "1", *common]))
    assert (tmp_path / "taught/seed0/labels_taught.csv").is_file()
