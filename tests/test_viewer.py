"""The pair viewer: files written by the dataset stage, `voicetune view`, and a real browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from browser import chrome
from test_dataset import build, make_pairs, pair
from voicetune import cli, viewer
from voicetune.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src"
NEEDLE = "A quokka census across islands found 41 colonies in 2019."


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    pairs = make_pairs() + [pair("paper2-quokka", "paper2", "results", "sentence", "ai_generic",
                                 NEEDLE, rough="so we counted quokkas, 41 colonies (2019)")]
    _, out = build(tmp_path_factory.mktemp("viewer"), pairs)
    return out


def viewer_data(folder: Path) -> dict:
    text = (folder / "data.js").read_text()
    return json.loads(text.removeprefix("window.VOICETUNE_DATA = ").rstrip().rstrip(";"))


def test_dataset_writes_a_self_contained_viewer(dataset_dir):
    folder = dataset_dir / "viewer"
    assert {p.name for p in folder.iterdir()} == {"index.html", "viewer.js", "viewer.css", "data.js"}
    html = (folder / "index.html").read_text()
    assert "http" not in html  # no CDN, no network
    data = viewer_data(folder)
    assert len(data["records"]) == sum(1 for _ in open(dataset_dir / "train.jsonl")) + sum(
        1 for _ in open(dataset_dir / "valid.jsonl"))
    quokka = next(r for r in data["records"] if r["id"] == "paper2-quokka-ai_generic")
    assert (quokka["original"], quokka["words_original"]) == (NEEDLE, 10)
    assert {r["reason"] for r in data["rejected"]} == {"numbers_changed", "too_short"}


def test_find_locates_viewer_from_run_dataset_or_viewer_folder(dataset_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # The pipeline links run_dir/<stage> to the cached output.
    (run / "dataset").symlink_to(dataset_dir, target_is_directory=True)
    expected = (dataset_dir / "viewer").resolve()
    for folder in (run, dataset_dir, dataset_dir / "viewer"):
        assert viewer.find(folder).resolve() == expected


def test_view_without_viewer_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["view", str(tmp_path), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no viewer/index.html" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="not a folder"):
        viewer.find(tmp_path / "missing")


@pytest.fixture
def served(dataset_dir, tmp_path):
    """`voicetune view DIR --port 0 --no-browser` in a subprocess; yields its URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voicetune.cli", "view", str(dataset_dir), "--port", "0",
             "--no-browser"], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/index\.html", line)
        assert match, f"no URL from `voicetune view`: {line!r} {(tmp_path / 'server.log').read_text()}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    with chrome(tmp_path / "chrome-profile") as driver:
        yield driver


@pytest.mark.slow
def test_viewer_in_a_real_browser(served, browser, dataset_dir, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    records = viewer_data(dataset_dir / "viewer")["records"]
    n = len(records)

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    def press(key: str) -> None:
        browser.execute_script("document.activeElement.blur()")  # keys go to the page
        ActionChains(browser).send_keys(key).perform()

    browser.get(served)
    WebDriverWait(browser, 10).until(lambda d: text("counter") == f"1 / {n}")
    # Two rough styles of one unit share the original: the rough side tells records apart.
    first = text("rough")
    assert first and text("words-original") == f"({records[0]['words_original']} words)"
    browser.save_screenshot(str(tmp_path / "viewer.png"))
    print(f"screenshot: {tmp_path / 'viewer.png'}")

    press(Keys.ARROW_RIGHT)
    assert text("counter") == f"2 / {n}" and text("rough") != first
    assert text("rough") == records[1]["rough"]
    press(Keys.ARROW_LEFT)
    assert text("counter") == f"1 / {n}" and text("rough") == first
    press("j")
    assert text("counter") == f"2 / {n}"
    press("k")
    assert text("counter") == f"1 / {n}"

    browser.find_element(By.ID, "search").send_keys("quokka")
    assert text("counter") == "1 / 1" and text("original") == NEEDLE
    assert "quokkas" in text("rough")
    browser.find_element(By.ID, "search").clear()
    browser.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    assert text("counter").endswith(f"/ {n}")

    Select(browser.find_element(By.ID, "filter-shape")).select_by_value("abstract")
    abstracts = sum(r["shape"] == "abstract" for r in records)
    assert 0 < abstracts < n and text("counter").endswith(f"/ {abstracts}")
    for _ in range(abstracts):
        assert "shape abstract" in text("meta")
        press(Keys.ARROW_RIGHT)

    browser.find_element(By.ID, "tab-rejected").click()
    assert not browser.find_element(By.ID, "panel-pairs").is_displayed()
    reasons = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#rejected-rows td.reason")]
    assert reasons == ["numbers_changed", "too_short"]
    # Raw data is text, never markup: the <b> in a rejected rough draft shows literally.
    assert "<b>significant</b>" in browser.find_element(By.ID, "rejected-rows").text
    browser.save_screenshot(str(tmp_path / "rejected.png"))
