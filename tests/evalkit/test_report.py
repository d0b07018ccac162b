"""The comparison page and the nightly site, made from real runs of the demo model and read in a real browser
(headless Chromium through Selenium; without it these tests skip, saying what is missing)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from evalkit import compare, gate, history, report
from evalkit.config import compose
from evalkit.run import evaluate

REPO = Path(__file__).resolve().parents[2]
#: EVALKIT_UPDATE_DOCS=1 also writes the README's picture of the flip view
FLIP_VIEW_PNG = REPO / "docs" / "img" / "flip-view.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,900"]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, its console kept (goog:loggingPrefs browser ALL)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (evalkit[dev])")
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver_path)) if path is None]
    if missing:
        pytest.skip(f"the browser tests need {' and '.join(missing)} (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="evalkit-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)  # no Selenium Manager download
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, page: Path, screenshot: Path) -> None:
    """Load ``page`` from file://, screenshot all of it, and require a console without errors."""
    driver.get(page.resolve().as_uri())
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1200, min(height + 120, 12000))
    driver.save_screenshot(str(screenshot))
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


def images_loaded(driver) -> list[int]:
    return driver.execute_script("return Array.from(document.images, i => i.complete ? i.naturalWidth : 0)")


def flip_rows(driver, number: int) -> int:
    return driver.execute_script(f"return document.querySelectorAll('#flips-{number} tbody tr').length")


def differing(a: Path, b: Path) -> int:
    pa, pb = (pd.read_csv(d / "predictions.csv").set_index("id")["pred1"] for d in (a, b))
    return int((pa != pb.reindex(pa.index)).sum())


@pytest.fixture(scope="module")
def fp32_and_int8(ort_run, sample_root, lite0_onnx, calibration_root, tmp_path_factory) -> tuple[Path, Path]:
    """lite0 on the 200 shared photos in fp32 (the session's run) and in int8, both with their logits."""
    fp32 = Path(ort_run[0]["config"]["results"]["dir"]) / ort_run[0]["id"]
    int8 = evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}",
                             "precision=int8", f"precision.calibration.root={calibration_root}",
                             f"results.dir={tmp_path_factory.mktemp('int8')}", "results.save_logits=true",
                             "progress=false"]))
    return fp32, int8


def test_the_fp32_int8_flip_view_shows_every_flip_with_its_picture(browser, fp32_and_int8, tmp_path):
    fp32, int8 = fp32_and_int8
    page = compare.report([fp32, int8], tmp_path / "compare.html")
    open_page(browser, page, tmp_path / "compare.png")
    flips = differing(fp32, int8)
    assert flips > 0 and flip_rows(browser, 0) == flips
    sizes = images_loaded(browser)
    assert len(sizes) == 3 + flips and all(sizes), sizes  # three plots, one picture per flip
    assert "int8 Q/DQ simulated in fp32" in browser.find_element("css selector", "#pair-0 h3").text
    section = browser.find_element("id", "pair-0")
    section.screenshot(str(tmp_path / "flip-view.png"))
    if os.environ.get("EVALKIT_UPDATE_DOCS") == "1":
        FLIP_VIEW_PNG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "flip-view.png", FLIP_VIEW_PNG)


@pytest.fixture(scope="module")
def nightly(sample_root, lite0_onnx, tmp_path_factory, fp32_and_int8) -> tuple[Path, dict[str, Path]]:
    """A results folder as a nightly leaves it: a sweep of three points on 40 photos (crop_pct 0.875, 1.0, then
    0.875 again) and a fourth point that failed without a run; two gates, the second failing the last run (its
    flips allowed: -1); the 200-photo fp32 and int8 runs indexed beside them (other trends)."""
    results = tmp_path_factory.mktemp("nightly") / "results"
    common = [f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=40",
              f"results.dir={results}", "results.save_logits=true", "progress=false"]
    points = {0: ["preprocess.crop_pct=0.875"], 1: ["preprocess.crop_pct=1.0"], 2: ["preprocess.crop_pct=0.875"],
              3: ["precision=int8", "precision.calibration.root=/nowhere"]}
    sweep = results / ".sweeps" / "20260101T000000"
    history.plan_sweep(sweep, {n: [*common, *o] for n, o in points.items()}, {3: "7_3"})
    runs = {}
    for n, name in enumerate(["wide", "full", "again"]):
        runs[name] = evaluate(compose([*common, *points[n]]), sweep=sweep.name)
        history.point_done(sweep, n, runs[name])
    history.point_failed(sweep, 3, "precision.calibration.root=/nowhere: no such folder")
    db = results / "history.sqlite"
    for run_dir in fp32_and_int8:
        history.add(db, run_dir)
    gate.gate([runs["wide"], runs["full"]], db, gate.load_config(None))
    gate.gate(list(runs.values()), db, gate.GateConfig(max_flips=-1))
    return results, runs


def test_runs_that_differ_only_in_crop_pct_have_their_own_labels_and_numbers(nightly):
    _, runs = nightly
    frame = compare.load([runs["wide"], runs["full"]])
    assert list(frame["label"]) == ["crop_pct=0.875", "crop_pct=1.0"]
    side = compare.table(frame)
    for label, run_dir in zip(frame["label"], [runs["wide"], runs["full"]]):
        own = pd.read_json(run_dir / "run.json", typ="series")["metrics"]
        assert [side.at[row, label] for row in ("n", "top1", "top5")] == [own["n"], own["top1"], own["top5"]]
    assert frame["top5"].nunique() == 2  # the recipes do score differently on these photos (top-1: alike)


def test_the_nightly_site_in_the_browser(browser, nightly, tmp_path):
    results, runs = nightly
    site = tmp_path / "site"
    report.main(["--results", str(results), "--out", str(site)])

    open_page(browser, site / "index.html", tmp_path / "index.png")
    missing = browser.find_element("id", "missing-points").text
    assert "point 3 (precision=int8 precision.calibration.root=/nowhere; SLURM job 7_3): " \
           "precision.calibration.root=/nowhere: no such folder" in missing
    gate_rows = browser.find_elements("css selector", "#gate tbody tr")
    # the second gate judged each run against the one before it, whatever its recipe (flips allowed: -1)
    assert [r.get_attribute("class") for r in gate_rows] == ["fail", "fail", "unverified"]
    assert all("history flips:" in r.text for r in gate_rows[:2])
    assert any("recipe changed: crop_pct" in r.text for r in gate_rows[:2])
    assert "0 pass, 2 fail, 1 unverified (of 3 runs); 1 sweep point(s) without a run" in browser.page_source

    open_page(browser, site / "trends.html", tmp_path / "trends.png")
    cards = "return Array.from(document.querySelectorAll('.card')).filter(c => c.style.display !== 'none').length"
    assert browser.execute_script(cards) == 3 and all(images_loaded(browser))
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("css selector", "select[data-key=precision]")).select_by_visible_text("int8")
    assert browser.execute_script(cards) == 1

    open_page(browser, site / "runs" / f"{runs['full'].name}.html", tmp_path / "run.png")
    assert browser.execute_script("return document.querySelectorAll('#per-class tbody tr').length") == 40

    [page] = (site / "compare").glob("*.html")
    open_page(browser, page, tmp_path / "site-compare.png")
    assert flip_rows(browser, 0) == differing(runs["wide"], runs["full"]) > 0
    assert flip_rows(browser, 1) == differing(runs["wide"], runs["again"]) == 0
    assert all(images_loaded(browser))


def test_a_folder_without_results_is_one_message_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        report.main(["--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "site")])
    assert stop.value.code == 2 and "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()
