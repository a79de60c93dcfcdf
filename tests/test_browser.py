"""End to end in headless Chromium: restore a photo, vote in a study; saves docs/screenshots/.

Needs Debian's `chromium` + `chromium-driver` (`.ci/install-browser`) and selenium; skipped with
the reason when they are missing. The server runs in a thread on a free localhost port with a
tiny random model, or with the weights in $FACEMEND_SCREENSHOT_WEIGHTS (for nicer screenshots).
Only localhost is contacted: the pages load nothing external and the browser runs with
background networking, component updates and sync off.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"
# Screenshots go to docs/screenshots only when asked (FACEMEND_SCREENSHOTS=1), so that test runs
# (CI included) never rewrite tracked files; otherwise to a temporary folder.
SHOTS = (REPO / "docs" / "screenshots" if os.environ.get("FACEMEND_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / "facemend-screenshots")
FACES = Path(os.environ.get("FACEMEND_SHARED", REPO.parent / "shared")) / "data" / "celeba" / \
    "eval256"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--window-size=1200,1000", "--force-device-scale-factor=1"]


def _browser() -> tuple[str, str]:
    """(chromium binary, chromedriver) or skip with the reason."""
    pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[test]')")
    pytest.importorskip("uvicorn", reason="uvicorn not installed (pip install -e '.[web]')")
    real = Path("/usr/lib/chromium/chromium")
    chrome = str(real) if real.is_file() else (shutil.which("chromium")
                                               or shutil.which("chromium-browser"))
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None)
    if not chrome or not driver:
        pytest.skip("no chromium / chromedriver found: run .ci/install-browser (Debian packages)")
    return chrome, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _face_images(folder: Path, n: int = 6) -> None:
    """n aligned faces (real CelebA ones when ../shared has them, else smooth random blobs)."""
    folder.mkdir()
    real = sorted(FACES.glob("*.jpg"))[:n] if FACES.is_dir() else []
    rng = np.random.default_rng(0)
    for i in range(n):
        if len(real) == n:
            img = Image.open(real[i]).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
        else:
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC)
        img.save(folder / f"face{i}.png")


def _study(root: Path) -> Path:
    """A 3-method choice study built from real evaluate runs (identity, lanczos, ground truth)."""
    from facemend.config import EvalConfig
    from facemend.evaluation import evaluate
    from facemend.web.study import create_study

    _face_images(root / "data")
    cache, cfg = root / "cache", EvalConfig(resolution=64, tasks=("sr8",))

    def embed(images: list[np.ndarray]) -> np.ndarray:
        return np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float64)

    def truth(task, inputs, smalls, names):
        return [np.asarray(Image.open(cache / "hq" / n)) for n in names]

    runs = []
    for name, method in [("identity", "identity"), ("lanczos", "lanczos"), ("truth", truth)]:
        evaluate(root / "data", root / name, method, cfg=cfg, cache=cache, embedder=embed,
                 embedder_name="mean colour", method_name=name, progress=False,
                 save_outputs=True)
        runs.append(root / name)
    info = create_study(runs, root / "study.sqlite", trials=4, seed=0, raters=["alice"])
    return root / "study.sqlite", dict(info["raters"])["alice"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a live server (restore + study) in a thread; stopped after the module."""
    _browser()
    import torch
    import uvicorn

    from facemend.config import ModelConfig
    from facemend.models.generator import Generator
    from facemend.web.app import ServerSettings, create_app

    root = tmp_path_factory.mktemp("browser")
    study, token = _study(root)
    weights = os.environ.get("FACEMEND_SCREENSHOT_WEIGHTS")
    model = None
    if not weights:
        torch.manual_seed(0)
        model = Generator(ModelConfig(resolution=32, channel_base=256, max_channels=16,
                                      latent_dim=16, num_skips=1, codebook_size=8)).eval()
    app = create_app(ServerSettings(weights=weights, study=str(study)), model=model)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", study, token
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def driver(server):
    """A headless Chromium with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, chromedriver = _browser()
    profile = tempfile.mkdtemp(prefix="facemend-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _screenshot(d, name: str) -> None:
    """Save docs/screenshots/NAME.png of the whole page (viewport grown to its height)."""
    height = int(d.execute_script("return document.documentElement.scrollHeight"))
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1200, "height": min(max(height, 600), 2400), "deviceScaleFactor": 1,
        "mobile": False})
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(SHOTS / f"{name}.png"))
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _loaded(d, css: str) -> bool:
    """True when the image matching css exists and has decoded (naturalWidth > 0)."""
    return bool(d.execute_script(
        "const i = document.querySelector(arguments[0]);"
        "return !!i && i.complete && i.naturalWidth > 0;", css))


def test_restore_page_uploads_and_shows_result(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = server[0]
    driver.get(base + "/")
    driver.find_element(By.ID, "file").send_keys(str(PHOTO))
    driver.find_element(By.ID, "seed").clear()
    driver.find_element(By.ID, "seed").send_keys("7")
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 60).until(lambda d: _loaded(d, "#result-0")
                                    or "error" in d.find_element(By.ID, "status").text)
    assert "error" not in driver.find_element(By.ID, "status").text
    assert _loaded(driver, ".face .after") and _loaded(driver, ".face img")
    size = driver.execute_script("const i = document.querySelector('#result-0');"
                                 "return [i.naturalWidth, i.naturalHeight];")
    assert tuple(size) == Image.open(PHOTO).size
    link = driver.find_element(By.ID, "download-0").get_attribute("href")
    assert link.startswith(base + "/api/results/") and link.endswith("?download=1")
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name);")
    assert all(u.startswith(base) for u in urls), urls  # nothing from another host
    _screenshot(driver, "restore")


def test_study_page_votes_and_resumes(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from facemend.web.study import next_trial

    base, study, token = server
    driver.get(base + "/study#token=" + token)  # the rater's personal link
    WebDriverWait(driver, 20).until(lambda d: _loaded(d, "#option-2 img"))
    assert "trial 1 of 4" in driver.find_element(By.ID, "progress").text
    _screenshot(driver, "study")
    driver.find_element(By.ID, "option-1").click()
    WebDriverWait(driver, 20).until(
        lambda d: "trial 2 of 4" in d.find_element(By.ID, "progress").text)
    assert next_trial(study, "alice")["done"] == 1
    driver.refresh()  # the cookie brings the rater back to where they stopped
    WebDriverWait(driver, 20).until(
        lambda d: "trial 2 of 4" in d.find_element(By.ID, "progress").text)
    for _ in range(3):
        before = driver.find_element(By.ID, "progress").text
        driver.find_element(By.ID, "option-0").click()
        WebDriverWait(driver, 20).until(
            lambda d, b=before: d.find_element(By.ID, "done").is_displayed()
            or d.find_element(By.ID, "progress").text != b)
    assert driver.find_element(By.ID, "done").is_displayed()
    assert next_trial(study, "alice")["done"] == 4


def test_api_docs_render_offline(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = server[0]
    driver.get(base + "/docs")
    WebDriverWait(driver, 20).until(
        lambda d: "/api/restore" in d.find_element(By.TAG_NAME, "body").text)
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name);")
    assert urls and all(u.startswith(base) for u in urls), urls  # nothing from another host
