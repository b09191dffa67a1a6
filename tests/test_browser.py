"""The whole loop in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

Open the Colab notebook, run its cell (it installs this checkout), paste local URLs, click Download,
watch the bar move and reach 100 %, stop a download with the kernel's stop button and resume it,
see the files in the Library, pick the tiny checkpoint, click Generate and see the image.
Screenshots go to test-artifacts/browser/.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"

if not os.path.exists(CHROMIUM):
    if IN_CI:
        pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM}: apt-get install -y chromium", pytrace=False)
    pytest.skip("Chromium is not installed (apt-get install -y chromium); browser tests skipped outside CI",
                allow_module_level=True)

playwright_sync = pytest.importorskip("playwright.sync_api")

from servers import Route, TestServer  # noqa: E402
from ui_helpers import slow_route  # noqa: E402

pytestmark = pytest.mark.timeout(420)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files():
    with TestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def civitai_accounts():
    """A local stand-in for CivitAI's host (its own, since the sources treat CIVITAI_ENDPOINT's host as CivitAI)."""
    with TestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def tiny():
    """The tiny real models (an SD1 single-file checkpoint and the configs of its tiny architecture)."""
    import tiny_models

    return tiny_models.tiny_library()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny, civitai_accounts):
    """`colab-sd app` serving the Colab notebook; its kernel's cell installs this checkout."""
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "colab_sd.ipynb", work / "colab_sd.ipynb")  # `colab-sd app` keeps it
    port, token = _free_port(), "browser-test-login"
    env = dict(os.environ, COLAB_SD_INSTALL_FROM=str(ROOT), PIP_NO_INDEX="1", JUPYTER_TOKEN=token,
               JUPYTERLAB_SETTINGS_DIR=str(work / ".lab-settings"), JUPYTERLAB_WORKSPACES_DIR=str(work / ".lab-ws"),
               NO_PROXY="127.0.0.1,localhost",
               # The tiny architectures are not the real ones: their configs come from the test library, never the Hub.
               COLAB_SD_CONFIGS=str(tiny / "_configs"), HF_HUB_OFFLINE="1",
               CIVITAI_ENDPOINT=civitai_accounts.url(""))  # the Tokens panel's check asks a local "CivitAI"
    for name in ("COLAB_SD_HOME", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    log = open(work / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "colab_sd.cli", "app", str(work), "--no-browser", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"colab-sd app did not start: {(work / 'app.log').read_text()[-2000:]}")
            time.sleep(0.3)
    try:
        yield {"url": base, "token": token, "models": work / "models", "work": work}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def evidence_on_failure(page, name: str):
    """Leave a screenshot and the page's HTML behind when a browser step fails (CI artifacts)."""
    try:
        yield
    except BaseException:
        shot(page, f"failure-{name}")
        (ARTIFACTS / f"failure-{name}.html").write_text(page.content())
        raise


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def output(page):
    return page.locator(".jp-CodeCell .jp-OutputArea-output").last


def open_tab(page, title: str) -> None:
    output(page).locator(".lm-TabBar-tab", has_text=title).first.click()


def run_the_cell(page) -> None:
    """Run the notebook's code cell once the kernel is ready (a run sent before it connects can be lost)."""
    page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=90_000)
    prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(3):
        page.locator(".jp-CodeCell .jp-InputArea-editor").first.click()
        page.keyboard.press("Control+Enter")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(mark in prompt.inner_text() for mark in ("*", "1")):
                return
            time.sleep(0.25)
    pytest.fail("the notebook's cell never started running")


def bar_width(bar) -> float:
    """How full a FloatProgress is, in percent, as drawn."""
    return float(bar.evaluate(
        "el => { const b = el.querySelector('.progress-bar') || el; const outer = el.getBoundingClientRect().width ||"
        " b.parentElement.getBoundingClientRect().width; return 100 * b.getBoundingClientRect().width / outer; }"))


def test_notebook_download_cancel_resume_library_generate(lab, files, civitai_accounts, page, tiny):
    with evidence_on_failure(page, "loop"):
        run_the_loop(lab, files, civitai_accounts, page, tiny)


def run_the_loop(lab, files, civitai_accounts, page, tiny):
    small = os.urandom(40 * 64 * 1024)  # 2.5 MB, streamed slowly so the bar is seen moving
    big = os.urandom(120 * 64 * 1024)
    files.route("/models/style_lora.safetensors", slow_route(small, pause=0.08))
    big_route = files.route("/models/big.safetensors", slow_route(big, pause=0.1))
    checkpoint = (tiny / "checkpoint" / "tiny-sd1.safetensors").read_bytes()
    files.route("/models/tiny-sd1.safetensors", Route(body=checkpoint))

    page.goto(f"{lab['url']}/lab/tree/colab_sd.ipynb?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell")
    run_the_cell(page)
    out = output(page)
    out.locator(".lm-TabBar-tab", has_text="Download").wait_for(timeout=180_000)
    shot(page, "01-app-opened")
    assert "models in " + str(lab["models"]) in out.inner_text()

    # Download: paste a link, click, watch the bar move, then reach 100 %.
    out.locator("textarea").first.fill(files.url("/models/style_lora.safetensors"))
    out.locator("select").first.select_option("lora")
    out.locator("button", has_text="Download").first.click()
    bar = out.locator(".widget-hprogress").first
    page.wait_for_function(
        "() => { const b = document.querySelector('.jp-OutputArea-output .widget-hprogress .progress-bar');"
        " if (!b) return false; const w = parseFloat(b.style.width || '0'); return w > 5 && w < 95; }")
    shot(page, "02-downloading")
    out.get_by_text("✓ 100 %").wait_for(timeout=60_000)
    shot(page, "03-downloaded")
    assert bar_width(bar) > 99
    status = out.inner_text()
    assert "style_lora.safetensors" in status and "2.5 MB" in status
    assert (lab["models"] / "lora" / "style_lora.safetensors").read_bytes() == small

    # Stop (the kernel's interrupt, like Colab's ■) keeps the partial file; Download again resumes.
    out.locator("textarea").first.fill(files.url("/models/big.safetensors"))
    out.locator("select").first.select_option("other")
    out.locator("button", has_text="Download").first.click()
    out.get_by_text("ETA").first.wait_for()
    page.locator("jp-button[data-command='notebook:interrupt-kernel'], "
                 "button[data-command='notebook:interrupt-kernel']").first.click()
    out.get_by_text("cancelled: the partial file is kept").wait_for(timeout=60_000)
    shot(page, "04-cancelled")
    part = lab["models"] / "other" / "big.safetensors.part"
    assert part.exists() and 0 < part.stat().st_size < len(big)
    big_route.slow = False
    out.locator("button", has_text="Download").first.click()
    out.get_by_text("saved: big.safetensors").wait_for(timeout=60_000)
    assert (lab["models"] / "other" / "big.safetensors").read_bytes() == big and not part.exists()

    # Library lists what was downloaded.
    open_tab(page, "Library")
    out.get_by_text("style_lora.safetensors").first.wait_for()
    shot(page, "05-library")
    text = out.inner_text()
    assert "lora (1)" in text and "other (1)" in text and "big.safetensors" in text

    # A checkpoint with kind "auto": its header says SD1 checkpoint, so it lands in checkpoint/.
    open_tab(page, "Download")
    out.locator("textarea").first.fill(files.url("/models/tiny-sd1.safetensors"))
    out.locator("select").first.select_option("auto")
    out.locator("button", has_text="Download").first.click()
    out.get_by_text(f"saved: tiny-sd1.safetensors in {lab['models'] / 'checkpoint'}").wait_for(timeout=60_000)
    assert (lab["models"] / "checkpoint" / "tiny-sd1.safetensors").read_bytes() == checkpoint

    # Generate: the new checkpoint is already chosen; a prompt, a small custom size, click, see the image.
    open_tab(page, "Generate")
    visible = lambda kind, label: out.locator(f".{kind}:visible", has_text=label).first  # noqa: E731
    assert visible("widget-dropdown", "Model").locator("select").input_value() == "tiny-sd1.safetensors"
    visible("widget-textarea", "Prompt").locator("textarea").fill("a photo of a red house")
    visible("widget-dropdown", "Size").locator("select").select_option("Custom")
    visible("widget-text", "Width").locator("input").fill("128")
    visible("widget-text", "Height").locator("input").fill("128")
    visible("widget-text", "Height").locator("input").press("Tab")
    visible("widget-text", "Seed").locator("input").fill("42")
    visible("widget-text", "Seed").locator("input").press("Tab")
    out.locator("button:visible", has_text="Generate").first.click()
    out.get_by_text("✓ 1 image · seed 42").wait_for(timeout=120_000)
    images = out.locator(".widget-image:visible")
    images.first.scroll_into_view_if_needed()
    shot(page, "06-generated")
    assert images.count() == 1
    assert images.first.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [128, 128]
    text = out.inner_text()
    assert "Seed: 42" in text and "a photo of a red house" in text and "saved: " in text

    # Tokens: paste, Check, see whose it is; the field empties and the saved notebook holds no token.
    token = "fake-civitai-token-0123456789"
    civitai_accounts.route("/api/v1/me", Route(handler=lambda h: _whoami(h, token)))
    out.locator(".lm-TabBar-tab", has_text="Tokens").first.scroll_into_view_if_needed()
    open_tab(page, "Tokens")
    field = out.locator(".widget-text:visible", has_text="CivitAI").locator("input[type=password]")
    field.fill(token)
    out.locator("button:visible", has_text="Check").first.click()
    out.get_by_text("✓ valid: belongs to browser-user").wait_for()
    assert field.input_value() == "" and "entered in this panel" in out.inner_text()
    shot(page, "07-tokens")
    page.keyboard.press("Control+s")
    page.locator(".jp-mod-dirty").first.wait_for(state="detached", timeout=10_000)
    saved = (lab["work"] / "colab_sd.ipynb").read_text()
    assert token not in saved


def _whoami(h, token: str) -> None:
    """CivitAI's current-user endpoint, as the Tokens panel's check calls it."""
    import json

    ok = h.headers.get("Authorization") == f"Bearer {token}"
    body = json.dumps({"username": "browser-user"} if ok else {"error": "Unauthorized"}).encode()
    h.send_response(200 if ok else 401)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


# ---------------------------------------------------------------------------------------------- CivitAI tab


def test_civitai_search_open_download_recreate(lab, civitai_accounts, page, tiny):
    """From the CivitAI tab alone: find a LoRA, open it, download it, recreate one of its images, generate."""
    from fakes.civitai import FakeCivitai, FakeFile
    from fakes.civitai_catalog import FakeImage

    site = FakeCivitai().start()  # its API answers on the lab's CIVITAI_ENDPOINT host (routes below)
    try:
        with evidence_on_failure(page, "civitai"):
            _civitai_loop(lab, civitai_accounts, page, tiny, site, FakeFile, FakeImage)
    finally:
        site.stop()


def _civitai_loop(lab, civitai_accounts, page, tiny, site, FakeFile, FakeImage):
    ckpt = (tiny / "checkpoint" / "tiny-sd1.safetensors").read_bytes()
    lora = (tiny / "lora" / "tiny-kohya.safetensors").read_bytes()
    meta = {"prompt": "a paper lantern, tinystyle", "negativePrompt": "blurry", "steps": 2, "cfgScale": 5, "seed": 7,
            "Size": "128x128", "sampler": "Euler a",
            "civitaiResources": [{"type": "checkpoint", "modelVersionId": 1101},
                                 {"type": "lora", "weight": 0.6, "modelVersionId": 1201}]}
    site.add_version(model_id=11, version_id=1101, model_name="Tiny Checkpoint", model_type="Checkpoint",
                     files=[FakeFile(11001, "tiny_ckpt.safetensors", ckpt)])
    site.add_version(model_id=12, version_id=1201, model_name="Tiny Lantern Style", model_type="LORA",
                     downloads=900, trained_words=["tinystyle"],
                     images=[FakeImage(5001, meta=meta, width=128, height=128), FakeImage(5002, level=8)],
                     files=[FakeFile(12001, "tiny_lantern.safetensors", lora)])
    for n in range(3):
        site.add_version(model_id=20 + n, version_id=2001 + n, model_name=f"Tiny Filler {n}", model_type="LORA",
                         downloads=n, files=[FakeFile(2100 + n, f"filler_{n}.safetensors", lora[:-1] + bytes([n]))])
    for path in ("/api/v1/models", "/api/v1/images", "/api/v1/model-versions/1101", "/api/v1/model-versions/1201",
                 "/api/download/models/1101", "/api/download/models/1201"):
        civitai_accounts.route(path, Route(handler=site.dispatch))

    if not output(page).locator(".lm-TabBar-tab", has_text="CivitAI").count():  # run alone: open the app first
        page.goto(f"{lab['url']}/lab/tree/colab_sd.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-Notebook .jp-CodeCell")
        run_the_cell(page)
        output(page).locator(".lm-TabBar-tab", has_text="CivitAI").wait_for(timeout=180_000)
    out = output(page)
    open_tab(page, "CivitAI")
    out.locator("input[placeholder^='search CivitAI']").fill("tiny")
    out.locator("select:visible").first.select_option(label="LoRA")
    out.locator("button:visible", has_text="Search").first.click()
    out.get_by_text("4 models").wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output img')].filter(i => "
                           "i.naturalWidth >= 300).length >= 4")
    shot(page, "08-civitai-search")
    assert out.get_by_text("Tiny Lantern Style").count() and "⬇ 900" in out.inner_text()

    out.locator("button:visible", has_text="Open").first.click()
    out.get_by_text("Trigger words:").wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output img')].filter(i => "
                           "i.naturalWidth === 450).length >= 1")
    out.get_by_text("1 preview above the content level not shown").wait_for()
    out.locator("button:visible", has_text="Recreate").first.scroll_into_view_if_needed()
    shot(page, "09-civitai-model")

    out.locator("button:visible", has_text="Download").first.click()
    out.get_by_text("saved: tiny_lantern.safetensors").wait_for(timeout=60_000)
    shot(page, "10-civitai-downloaded")
    assert (lab["models"] / "lora" / "tiny_lantern.safetensors").read_bytes() == lora
    assert (lab["models"] / "lora" / "tiny_lantern.safetensors.preview.jpeg").is_file()
    open_tab(page, "Library")  # the preview beside the model, shown in the Library
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output img')].some(i => "
                           "i.src.startsWith('data:image/jpeg') && i.title === 'tiny_lantern.safetensors' && "
                           "i.naturalWidth > 0)")
    out.locator("img[title='tiny_lantern.safetensors']").scroll_into_view_if_needed()
    shot(page, "10b-library-preview")
    assert "Tiny Lantern Style v1" in out.inner_text()
    open_tab(page, "CivitAI")

    out.locator("button:visible", has_text="Recreate").first.click()
    visible = lambda kind, label: out.locator(f".{kind}:visible", has_text=label).first  # noqa: E731
    visible("widget-textarea", "Prompt").locator("textarea").wait_for(timeout=120_000)
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output textarea')].some(t => "
                           "t.value === 'a paper lantern, tinystyle')", timeout=120_000)
    assert visible("widget-text", "Seed").locator("input").input_value() == "7"
    assert visible("widget-dropdown", "Sampler").locator("select").input_value() == "Euler a"
    visible("widget-textarea", "Prompt").scroll_into_view_if_needed()
    shot(page, "11-recreate-filled")
    out.locator("button:visible", has_text="Generate").first.click()
    out.get_by_text("✓ 1 image · seed 7").wait_for(timeout=120_000)
    out.locator(".widget-image:visible").first.scroll_into_view_if_needed()
    shot(page, "12-recreated-image")
    assert "a paper lantern, tinystyle" in out.inner_text()
    # The token (if the Tokens panel holds one) reached the API only as a header; the CDN never saw credentials.
    assert site.cdn.auth_seen == 0 and site.cdn.requests
    assert all("token=" not in r["full_path"] for r in civitai_accounts.requests + site.cdn.requests)


def test_second_pass_hires_img2img_mask_painting_upscale(lab, page, tiny):
    """Generate panel's second pass in a real browser: the hires row, Send to img2img, a mask painted with the
    mouse on the ipycanvas canvas (JupyterLab renders it), inpaint, and Upscale on a gallery image."""
    with evidence_on_failure(page, "second-pass"):
        _second_pass_loop(lab, page, tiny)


def _second_pass_loop(lab, page, tiny):
    checkpoint = lab["models"] / "checkpoint" / "tiny-sd1.safetensors"
    if not checkpoint.exists():  # run alone: the checkpoint the download loop would have fetched
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny / "checkpoint" / "tiny-sd1.safetensors", checkpoint)
    if not output(page).locator(".lm-TabBar-tab", has_text="Generate").count():
        page.goto(f"{lab['url']}/lab/tree/colab_sd.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-Notebook .jp-CodeCell")
        run_the_cell(page)
        output(page).locator(".lm-TabBar-tab", has_text="Generate").wait_for(timeout=180_000)
    out = output(page)
    open_tab(page, "Generate")
    visible = lambda kind, label: out.locator(f".{kind}:visible", has_text=label).first  # noqa: E731
    visible("widget-textarea", "Prompt").locator("textarea").fill("a photo of a cat")
    visible("widget-dropdown", "Size").locator("select").select_option("Custom")
    for name, value in (("Width", "64"), ("Height", "64"), ("Seed", "5")):
        visible("widget-text", name).locator("input").fill(value)
        visible("widget-text", name).locator("input").press("Tab")
    handle = visible("widget-slider", "Steps").locator(".noUi-handle, .ui-slider-handle").first
    handle.click()
    handle.press("Home")  # 1 step…
    handle.press("ArrowRight")  # …2: the tiny model needs no more, and the hires pass runs 2 as well

    # Hires fix: open the collapsed row, turn it on (×2, Latent), generate: a 128² image.
    out.locator(".p-Collapse-header:visible, .lm-Collapse-header:visible, .jupyter-widget-Collapse-header:visible",
                has_text="Hires fix").first.click()
    out.locator(".widget-checkbox:visible", has_text="Hires fix").locator("input").check()
    shot(page, "08-hires-row")
    out.locator("button:visible", has_text="Generate").first.click()
    out.get_by_text("✓ 1 image · seed 5").wait_for(timeout=180_000)
    first = out.locator(".widget-image:visible").first
    first.scroll_into_view_if_needed()
    assert first.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [128, 128]
    assert "Hires upscale: 2" in out.inner_text()
    out.locator(".widget-checkbox:visible", has_text="Hires fix").locator("input").uncheck()

    # Send to img2img, paint a mask with the mouse, inpaint.
    out.locator("button:visible", has_text="Send to img2img").first.click()
    out.get_by_text("init image 128×128").wait_for()
    visible("widget-text", "Width").locator("input").fill("128")
    visible("widget-text", "Height").locator("input").fill("128")
    visible("widget-text", "Height").locator("input").press("Tab")
    out.locator("button:visible", has_text="Paint mask").first.click()
    canvas = out.locator("canvas:visible").last
    canvas.wait_for(timeout=30_000)
    canvas.evaluate("el => el.scrollIntoView({block: 'center'})")
    box = canvas.bounding_box()
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y).tagName",
                        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    assert hit == "CANVAS", f"the mouse would land on a {hit}, not on the canvas"
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    out.get_by_text("of the image painted").wait_for(timeout=30_000)  # the strokes reached the kernel's mask
    shot(page, "09-mask-painted")
    out.locator("button:visible", has_text="Generate").first.click()
    out.get_by_text("✓ 1 image · seed 5").wait_for(timeout=180_000)
    page.wait_for_function("() => document.body.innerText.includes('Mask blur: 4')", timeout=60_000)

    # Upscale the newest gallery image (×2 with Lanczos, the latent mode's stand-in outside hires fix).
    out.locator("button:visible", has_text="Upscale").first.click()
    out.get_by_text("✓ upscaled to 256×256").wait_for(timeout=120_000)
    widths = out.locator(".widget-image:visible").evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
    assert 256 in widths, widths  # the upscaled image joined the gallery (the init preview is another image)
    out.locator(".widget-image:visible").nth(widths.index(256)).evaluate(
        "el => el.scrollIntoView({block: 'start'})")
    shot(page, "10-upscaled")


def test_newer_family_needs_line_and_inline_image(lab, page, tiny):
    """A Z-Image file copied into checkpoint/ by hand: the Generate panel shows the family's own controls and says,
    before Generate, which part it still lacks and how big it is; with the encoder in the library it generates."""
    with evidence_on_failure(page, "family"):
        _family_loop(lab, page, tiny)


def _family_loop(lab, page, tiny):
    import tiny_families

    built = tiny_families.save_zimage(tiny_families.build_zimage(), lab["work"] / "zimage-src")
    models = lab["models"]
    for src, dest in ((built["single"], models / "checkpoint" / "z_image_turbo.safetensors"),
                      (built["vae"], models / "vae" / "ae.safetensors")):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    if not (tiny / "_configs" / "zimage").exists():  # the kernel's COLAB_SD_CONFIGS: the tiny architecture's json
        shutil.copytree(built["config"], tiny / "_configs" / "zimage")
    if not output(page).locator(".lm-TabBar-tab", has_text="Generate").count():
        page.goto(f"{lab['url']}/lab/tree/colab_sd.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-Notebook .jp-CodeCell")
        run_the_cell(page)
        output(page).locator(".lm-TabBar-tab", has_text="Generate").wait_for(timeout=180_000)
    out = output(page)
    visible = lambda kind, label: out.locator(f".{kind}:visible", has_text=label).first  # noqa: E731

    def refresh_and_choose():
        open_tab(page, "Library")
        out.locator("button:visible", has_text="Refresh").first.click()
        out.get_by_text("z_image_turbo").first.wait_for()
        open_tab(page, "Generate")
        visible("widget-dropdown", "Model").locator("select").select_option("z_image_turbo.safetensors")

    refresh_and_choose()
    out.get_by_text("to fetch on the first Generate into text_encoder/").wait_for(timeout=30_000)
    assert "Qwen3-4B text encoder (bf16) 8.0 GB" in out.inner_text()
    visible("widget-dropdown", "Model").scroll_into_view_if_needed()
    shot(page, "13-family-needs")

    (models / "text_encoder").mkdir(exist_ok=True)
    shutil.copy(built["text_encoder"], models / "text_encoder" / "qwen_3_4b.safetensors")
    refresh_and_choose()
    out.get_by_text("nothing to fetch").wait_for(timeout=30_000)
    _clear_init_image(out)  # an init image left in the box by an earlier test would make this img2img
    visible("widget-textarea", "Prompt").locator("textarea").fill("a photo of a cat")
    visible("widget-dropdown", "Size").locator("select").select_option("Custom")
    for name, value in (("Width", "64"), ("Height", "64"), ("Seed", "9")):
        visible("widget-text", name).locator("input").fill(value)
        visible("widget-text", name).locator("input").press("Tab")
    handle = visible("widget-slider", "Steps").locator(".noUi-handle, .ui-slider-handle").first
    handle.click()
    handle.press("Home")
    handle.press("ArrowRight")
    remove_lora = out.locator("button:visible[title='remove this LoRA']")
    if remove_lora.count():  # the SD1 LoRA an earlier test chose: refused in one line, then removed as a user would
        out.locator("button:visible", has_text="Generate").first.click()
        out.get_by_text("pick a LoRA made for Z-Image").wait_for(timeout=120_000)
        while remove_lora.count():
            remove_lora.first.click()
    out.locator("button:visible", has_text="Generate").first.click()
    out.get_by_text("✓ 1 image · seed 9").wait_for(timeout=180_000)
    assert "Shift: 3" in out.inner_text()  # Z-Image Turbo's own scheduler, written as Forge does
    out.locator(".widget-image:visible").first.scroll_into_view_if_needed()
    shot(page, "14-family-image")

    # Send to img2img with the Z-Image picture: the box opens without the mask part (inpainting is for SD models)
    # and img2img runs through Z-Image's own image-to-image pipeline.
    assert out.locator(".p-Collapse-header:visible, .lm-Collapse-header:visible, .jupyter-widget-Collapse-header:visible",
                       has_text="Hires fix").count() == 1  # hires fix is offered for Z-Image too
    out.locator("button:visible", has_text="Send to img2img").first.click()
    out.get_by_text("init image 64×64").wait_for()
    assert out.locator(".widget-checkbox:visible", has_text="Inpaint (mask)").count() == 0
    assert out.locator("button:visible", has_text="Paint mask").count() == 0
    out.locator("button:visible", has_text="Generate").first.click()
    page.wait_for_function("() => document.body.innerText.includes('z_image_turbo, Denoising strength: 0.75')",
                           timeout=180_000)
    out.get_by_text("✓ 1 image · seed 9").wait_for(timeout=60_000)
    out.get_by_text("init image 64×64").scroll_into_view_if_needed()
    shot(page, "15-family-img2img")
    _clear_init_image(out)


def _clear_init_image(out) -> None:
    """Back to txt2img: the img2img box opened if needed, its Clear button pressed."""
    if not out.locator("button:visible", has_text="Init image").count():
        out.locator(".p-Collapse-header:visible, .lm-Collapse-header:visible, "
                    ".jupyter-widget-Collapse-header:visible", has_text="img2img / inpaint").first.click()
    out.locator("button:visible", has_text="Init image").first.wait_for()
    out.locator("button:visible[title='back to txt2img']").first.click()
    out.get_by_text("txt2img (no init image)").wait_for()
