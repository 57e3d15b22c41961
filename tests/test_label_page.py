"""The report's "Label these cells" grid in a real browser: Debian's headless Chromium driven by selenium through
Debian's chromium-driver (nothing downloaded). Label the 55 asked cells by keys alone, undo one, re-label one by
click, reload, download; the downloaded labels.csv is what the commands the page prints accept, and they run."""

import os
import re
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
def report(tmp_path_factory):
    """A tiny demo with a 60-cell WBC1, one tiny run, its WBC1 logits, and the report asking for 55 cells."""
    from submission.demo.lab import generate

    out = tmp_path_factory.mktemp("label-page")
    generate(out / "demo", seed=0, scale=0.002, n_target=60)
    common = ["--workers", "0", "--device", "cpu", "--cache-dir", str(out / "cache"), "--no-plots"]
    _ok(runner.invoke(train.app, ["--data-root", str(out / "demo/data"), "--runs", str(out / "runs"), "--epochs", "1",
                                  "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8", "--no-pretrained",
                                  "--min-pred-classes", "1", *common]))
    _ok(runner.invoke(infer.app, ["--runs", str(out / "runs"), "--split", "WBC1", "--no-tta", "--cache-dir",
                                  str(out / "cache"), "--submission", str(out / "w1.csv")]))
    _ok(runner.invoke(ensemble.app, ["--runs", str(out / "runs"), "--split", "WBC1", "--no-tta", "--submission",
                                     str(out / "w1.csv"), "--report", str(out / "report.html"), "--ask", "55"]))
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
        assert len(cells) == 55 and all(c.find_element("tag name", "img").size["width"] >= 256 for c in cells)
        assert cells[0].location["y"] == cells[1].location["y"]  # a grid: several cells per row
        assert "Segmented neutrophil" in cells[0].text and "neutrophil_segmented" not in cells[0].text
        keys = class_keys(list(CLASSES))
        given = {}
        for i, cell in enumerate(cells):  # every cell by its key alone: each key labels the highlighted cell
            assert "current" in cell.get_attribute("class")
            label = CLASSES[(3 * i) % len(CLASSES)]
            ActionChains(driver).send_keys(keys[label]).perform()
            given[cell.get_attribute("data-image")] = label
        assert _count(driver) == 55 and driver.find_element("id", "lab-progress").get_attribute("value") == "55"
        ActionChains(driver).send_keys("z").perform()  # undo takes back the last
        assert _count(driver) == 54 and "current" in cells[54].get_attribute("class")
        ActionChains(driver).send_keys(keys[given[cells[54].get_attribute("data-image")]]).perform()
        button = cells[0].find_element("css selector", f'button[data-label="{CLASSES[9]}"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()  # a click re-labels
        given[cells[0].get_attribute("data-image")] = CLASSES[9]
        driver.refresh()
        assert _count(driver) == 55  # kept across a reload
        page_text = driver.find_element("id", "label").text
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

    # the commands the page prints, as printed (with this test's folders and tiny settings appended)
    printed = re.findall(r"python ((?:ensemble|infer|train)\.py [^;\n]*?)(?= then | checks| also| teaches|$)", page_text)
    assert len(printed) == 4, page_text
    apps = {"ensemble.py": ensemble.app, "infer.py": infer.app, "train.py": train.app}
    where = {"ensemble.py": ["--runs", str(out / "runs"), "--no-tta", "--submission", str(tmp_path / "w1.csv")],
             "infer.py": ["--runs", str(out / "runs"), "--no-tta", "--cache-dir", str(out / "cache")],
             "train.py": ["--runs", str(tmp_path / "taught"), "--epochs", "1", "--iters-per-epoch", "1", *common]}
    for command in printed:
        script, *args = command.replace("labels.csv", str(path)).replace("RUN", str(out / "runs/seed0")).split()
        result = _ok(runner.invoke(apps[script], [*args, *where[script]]))
        if "--labels" in args and script == "ensemble.py":
            assert "checked with 55 labels" in result
    assert (tmp_path / "taught/seed0/labels_taught.csv").is_file()
