"""Result pages in a real browser: ``detect-video --report`` and ``slowfast-test --report``.

The pages are opened from disk in headless Chromium (Debian's ``chromium`` package, driven by Playwright
through ``executable_path``; ``.ci/run`` installs it). Browser tests skip, saying why, where either is
missing. The page-size test needs no browser.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_detect_video import Assets, _cli, assets  # noqa: F401  (assets: the tiny detector/model fixture)
from test_train_test import make_synth, write_config

from slowfast_det.config import load_config
from slowfast_det.models import build_model
from slowfast_det.pipeline.tables import person_actions_frame
from slowfast_det.report.page import DATA_MARKER, json_for_script
from slowfast_det.report.video import video_report_data, write_video_report
from slowfast_det.tools import test_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
STRIDE = 2.0
ACTION_THRESHOLD = 0.3


# ------------------------------------------------------------------------------------------ fixtures
def _chromium() -> str:
    for path in CHROMIUM_CANDIDATES:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no Chromium browser: install Debian's package (apt-get install -y chromium; .ci/run does)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright driving the system browser; `playwright install` is not needed)."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install .[test])")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])  # root in CI containers
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    p = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.errors = errors
    yield p
    p.close()


@pytest.fixture(scope="module")
def bikes_run(assets: Assets, bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """detect-video --report --render on bikes.mp4 (10 s, keyframes 0, 2, .., 8); returns the output folder."""
    out = tmp_path_factory.mktemp("bikes_report")
    status = _cli(assets, [str(bikes_mp4)], out, "--stride", str(STRIDE), "--action-threshold", str(ACTION_THRESHOLD),
                  "--topk", "2", "--report", "--render", str(out / "renders"), "--render-short-side", "136")
    assert status == 0
    return out


def _open(page: Any, path: Path) -> None:
    page.goto(path.resolve().as_uri())
    page.wait_for_function("() => window.REPORT !== undefined")


def _visible_rows(page: Any) -> list[int]:
    return page.eval_on_selector_all(".row:not(.hidden)", "rs => rs.map(r => Number(r.dataset.person))")


# ------------------------------------------------------------------------------------------ video page
def test_report_is_self_contained_with_a_generated_data_block(bikes_run: Path) -> None:
    html = (bikes_run / "bikes.report.html").read_text(encoding="utf-8")
    assert DATA_MARKER not in html and "@@TITLE@@" not in html
    # no network: no external scripts, styles or images; the video by a relative path
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)[1])
    assert data["media"] == "renders/bikes.mp4" and data["media_has_boxes"]
    assert data["stride"] == STRIDE and data["threshold"] == ACTION_THRESHOLD
    table = pd.read_csv(bikes_run / "bikes.actions.csv")
    assert [p["id"] for p in data["persons"]] == list(dict.fromkeys(table.sort_values(
        ["timestamp", "person_id"], kind="stable")["person_id"]))
    assert all(p["thumb"].startswith("data:image/jpeg;base64,") for p in data["persons"])


def test_report_needs_the_csv_format(assets: Assets, bikes_mp4: Path, tmp_path: Path,  # noqa: F811
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(assets, [str(bikes_mp4)], tmp_path, "--format", "ava", "--report") == 2
    assert "--report needs --format csv" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_script_element_cannot_be_closed_by_the_data() -> None:
    text = json_for_script({"name": "</script><script>alert(1)</script>", "x": float("nan")})
    assert "<" not in text and ">" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>", "x": None}


def test_timeline_rows_bars_seek_and_filters(bikes_run: Path, page: Any, tmp_path: Path) -> None:
    table = pd.read_csv(bikes_run / "bikes.actions.csv")
    acted = table[table["action_id"].notna()]
    assert table["person_id"].nunique() >= 2, "the fixture should track several people"
    _open(page, bikes_run / "bikes.report.html")
    page.wait_for_function("() => document.querySelector('video').readyState >= 1", timeout=10_000)
    assert page.evaluate("() => document.querySelector('video').error") is None

    # one row per person id of the CSV, in order of appearance
    rows = page.eval_on_selector_all(".row", "rs => rs.map(r => Number(r.dataset.person))")
    assert sorted(rows) == sorted(table["person_id"].unique().tolist())
    assert sorted(_visible_rows(page)) == sorted(acted["person_id"].unique().tolist())

    # bars: per person and action, the keyframes they cover are exactly the CSV's rows
    bars = page.evaluate("() => REPORT.bars()")
    covered: dict[tuple[int, int], set[float]] = {}
    for b in bars:
        covered.setdefault((b["person"], b["action"]), set()).update(
            np.arange(b["t0"], b["t1"] + 1e-9, STRIDE).round(6).tolist())
    expected = {(int(p), int(a)): set(g["timestamp"].round(6))
                for (p, a), g in acted.groupby(["person_id", "action_id"])}
    assert covered == expected

    # geometry: a bar starts at its first keyframe minus half a stride, on a time axis of the video's length,
    # and is drawn there (its pixels are coloured, the row's background before it is not)
    duration = page.evaluate("() => REPORT.data.duration")
    assert duration == pytest.approx(10.0, abs=0.05)
    last = max(bars, key=lambda b: b["t0"])
    t0 = last["t0"]
    assert t0 > 0
    canvas = page.query_selector(f".row[data-person='{last['person']}'] canvas")
    cb = canvas.bounding_box()
    assert last["x"] == pytest.approx((t0 - STRIDE / 2) / duration * cb["width"], abs=0.5)
    alpha = page.evaluate(
        "([c, xs, y]) => { const r = c.width / c.clientWidth; const ctx = c.getContext('2d');"
        " return xs.map(x => ctx.getImageData(Math.round(x * r), Math.round(y * r), 1, 1).data[3]); }",
        [canvas, [last["x"] + 2, last["x"] - 3], last["y"] + last["h"] / 2])
    assert alpha[0] > 0 and alpha[1] == 0

    # clicking a bar seeks the video to its keyframe; the current-time line moves there
    canvas.click(position={"x": last["x"] + 3, "y": last["y"] + last["h"] / 2})
    assert page.evaluate("() => document.querySelector('video').currentTime") == pytest.approx(t0, abs=1e-3)
    page.wait_for_function("() => document.querySelector('video').seeking === false")
    cursor = page.query_selector("#cursor").bounding_box()
    assert cursor["x"] == pytest.approx(cb["x"] + t0 / duration * cb["width"], abs=2.5)

    # person filter hides and shows that row
    pid = rows[0]
    page.click(f"#person-filter input[data-person='{pid}']")
    page.wait_for_function(f"() => document.querySelector('.row[data-person=\"{pid}\"]').classList.contains('hidden')")
    assert pid not in _visible_rows(page)
    page.click(f"#person-filter input[data-person='{pid}']")
    page.wait_for_function(f"() => !document.querySelector('.row[data-person=\"{pid}\"]').classList.contains('hidden')")

    # action filter: none -> no row; one action -> exactly the people with that action
    page.click("button[data-none='action-filter']")
    page.wait_for_function("() => document.querySelectorAll('.row:not(.hidden)').length === 0")
    assert page.is_visible("#empty")
    action = int(acted["action_id"].value_counts().index[0])
    page.click(f"#action-filter input[data-action='{action}']")
    page.wait_for_timeout(100)
    assert sorted(_visible_rows(page)) == sorted(acted[acted["action_id"] == action]["person_id"].unique().tolist())
    page.click("button[data-all='action-filter']")

    # threshold: the page recomputes which people have an action over it
    # (the slider moves in steps of 0.01: thresholds just over some person's best score, so each drops someone)
    best = acted.groupby("person_id")["score"].max()
    cuts = sorted({round(float(np.floor(m * 100)) / 100 + 0.01, 2) for m in best if m < 0.99})
    for thr in cuts[:2] + cuts[-1:]:
        page.eval_on_selector("#threshold", f"s => {{ s.value = '{thr}'; s.dispatchEvent(new Event('input')); }}")
        page.wait_for_timeout(100)
        want = acted[acted["score"] >= thr]["person_id"].unique().tolist()
        assert sorted(_visible_rows(page)) == sorted(want), thr
    page.eval_on_selector("#threshold", "s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(100)

    shot = tmp_path / "bikes.report.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20  # not blank: header, video frame, coloured bars
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 50
    assert not page.errors


# ------------------------------------------------------------------------------------------ scale
def _long_table(minutes: int = 30, people: int = 20, seed: int = 0) -> pd.DataFrame:
    """Every person present at every keyframe (1 s) of a long video, scores flickering around the threshold."""
    rng = np.random.default_rng(seed)
    n = minutes * 60
    ts = np.repeat(np.arange(n, dtype=np.float64), people)
    ids = np.tile(np.arange(1, people + 1), n)
    boxes = rng.uniform(0, 0.5, (len(ts), 2))
    boxes = np.concatenate([boxes, boxes + rng.uniform(0.1, 0.5, (len(ts), 2))], axis=1)
    scores = rng.uniform(0, 0.45, (len(ts), 80))
    scores[:, rng.choice(80, 10, replace=False)] = rng.uniform(0.1, 1.0, (len(ts), 10))
    names = {i: f"action {i}" for i in range(1, 81)}
    return person_actions_frame(video_id="long", timestamps=ts, person_ids=ids, boxes=boxes,
                                detector_scores=np.full(len(ts), 0.9), scores=scores, class_names=names,
                                threshold=0.3, topk=3)


def _noise_frames(times: Any) -> list[np.ndarray]:
    rng = np.random.default_rng(1)  # full-HD noise: the worst case for the JPEG thumbnails
    return [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in times]


def test_thirty_minutes_twenty_people_page_is_small(tmp_path: Path) -> None:
    from slowfast_det.report.page import render_page

    table = _long_table()
    data = video_report_data(table, stride=1, threshold=0.3, duration=1800.0, media="long.mp4", frames=_noise_frames)
    html = render_page("video_report.html", data, title="long")
    assert len(data["persons"]) == 20
    assert all(len(p["thumb"]) < 40_000 for p in data["persons"])  # downscaled, not full-HD crops
    assert len(html.encode()) < 5_000_000, f"{len(html.encode()) / 1e6:.2f} MB"
    (tmp_path / "long.report.html").write_text(html, encoding="utf-8")


def test_thirty_minutes_twenty_people_page_stays_responsive(page: Any, tmp_path: Path) -> None:
    table = _long_table(seed=2)
    csv = tmp_path / "long.actions.csv"
    table.to_csv(csv, index=False)
    write_video_report(csv, tmp_path / "long.report.html", stride=1, threshold=0.3)
    _open(page, tmp_path / "long.report.html")
    assert len(_visible_rows(page)) == 20
    ms = page.evaluate("() => { const t = performance.now(); REPORT.state.thr = 0.6; REPORT.render(); "
                       "return performance.now() - t; }")
    assert ms < 1500, f"re-rendering the timeline took {ms:.0f} ms"
    assert not page.errors


# ------------------------------------------------------------------------------------------ dataset page
@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """slowfast-test --report of a random tiny SlowFast on SynthAVA's val video; returns OUTPUT_DIR."""
    root = tmp_path_factory.mktemp("report_synth")
    synth = make_synth(root / "synth")
    cfg_file = write_config(root / "tiny.yaml", synth)
    torch.manual_seed(0)
    torch.save(build_model(load_config(cfg_file)).state_dict(), root / "random.pth")
    out = root / "test"
    with pytest.raises(SystemExit) as exit_:
        test_net.cli(["--cfg", str(cfg_file), "--no-progress", "--report", "OUTPUT_DIR", str(out),
                      "TEST.CHECKPOINT_FILE_PATH", str(root / "random.pth")])
    assert exit_.value.code in (0, None)
    return out


def test_dataset_page_shows_ap_and_gt_against_predictions(tested: Path, page: Any, tmp_path: Path) -> None:
    from ava_tools.evaluate import read_groundtruth_csv

    assert (tested / "report.html").is_file()
    metrics = json.loads((tested / "metrics.json").read_text())
    gt = read_groundtruth_csv(tested / "groundtruth.csv")
    keyframes = {(str(v), float(t)) for v, t in zip(gt["video_id"], gt["timestamp"].astype(str), strict=True)}
    _open(page, tested / "report.html")
    assert page.eval_on_selector_all(".ap-row", "rs => rs.length") == len(metrics["per_class"])
    cards = page.eval_on_selector_all(".kf", "cs => cs.map(c => [c.dataset.video, Number(c.dataset.t)])")
    assert {(v, t) for v, t in cards} == keyframes
    # thumbnails are the frames of AVA.FRAME_DIR, decoded by the browser
    assert page.eval_on_selector_all(".kf img", "is => is.filter(i => i.naturalWidth > 0).length") == len(cards)

    # at threshold 1 nothing is predicted: every GT box is a miss; at the lowest, every box predicted
    page.eval_on_selector("#threshold", "s => { s.value = 1; s.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(100)
    counts = page.eval_on_selector_all(".kf", "cs => cs.map(c => [Number(c.dataset.fp), Number(c.dataset.miss)])")
    boxes = gt[gt["x1"].notna()].copy()
    boxes["t"] = boxes["timestamp"].astype(str).astype(float)
    for col in ("x1", "y1", "x2", "y2"):
        boxes[col] = (boxes[col] * 1000).round()
    labels = boxes.drop_duplicates(["video_id", "t", "x1", "y1", "x2", "y2", "action_id"])
    assert sum(fp for fp, _ in counts) == 0
    assert sum(m for _, m in counts) == len(labels) > 0  # every ground-truth label of every box missed
    page.eval_on_selector("#threshold", "s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(100)
    assert sum(int(c[0]) for c in page.eval_on_selector_all(
        ".kf", "cs => cs.map(c => [Number(c.dataset.fp)])")) > 0  # a random model: many wrong labels

    # class filter (click an AP bar): only keyframes with that class, in GT or predicted
    cls = int(boxes["action_id"].value_counts().index[-1])
    page.click(f".ap-row[data-cls='{cls}']")
    page.wait_for_timeout(100)
    assert page.eval_on_selector("#class-filter", "s => s.value") == str(cls)
    shown = page.eval_on_selector_all(".kf:not(.hidden)", "cs => cs.length")
    assert 0 < shown <= len(cards)

    shot = tmp_path / "dataset.report.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20
    assert not page.errors
