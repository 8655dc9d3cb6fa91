"""The page at / end to end in a real browser: headless Debian Chromium driven by Playwright,
against a real `tumorlens serve` process with API keys on."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_support import API_KEY, LiveServer, colour_photo, head_slice, jpeg, make_checkpoint, png

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium (Debian) to run the browser test"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    srv = LiveServer(make_checkpoint(tmp / "model.pt", confident_class=1), tmp)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(60_000)  # generous: CI machines are shared
    pg.requested = []
    pg.on("request", lambda req: pg.requested.append(req.url))
    pg.console_errors = []
    pg.on("console", lambda msg: pg.console_errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    context.close()


def explain_done(pg, action, method: str = "gradcam"):
    with pg.expect_response(lambda r: "/v1/explain" in r.url and f"method={method}" in r.url) as info:
        action()
    return info.value


def test_page_end_to_end(page, server):
    page.goto(server.url + "/")
    assert page.locator("#disclaimer").is_visible()
    assert "Research tool, not a diagnosis" in page.locator("#disclaimer").inner_text()

    # API keys are on: the page asks for one, then loads samples and methods with it
    assert page.locator("#key-row").is_visible()
    page.fill("#api-key", API_KEY)
    page.click("#key-save")
    # (selectors, not wait_for_function: the page's CSP forbids the eval that polling functions need)
    page.wait_for_selector("#sample option:nth-child(40)", state="attached")
    methods = page.locator("#method option").all_inner_texts()
    assert "gradcam" in methods and "gradcam++" in methods

    # pick a sample: prediction, bars, heatmap, attention and summary appear
    sample = page.locator("#sample option").nth(1).get_attribute("value")
    response = explain_done(page, lambda: page.select_option("#sample", sample))
    assert response.status == 200
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#predicted") == "meningioma"
    assert page.locator("#bars .bar").count() == 4
    assert page.get_attribute("#bars .bar.top", "data-class") == "meningioma"
    width = page.eval_on_selector("#bars .bar.top .fill", "e => parseFloat(e.style.width)")
    assert width > 90
    for _ in range(50):
        if page.eval_on_selector_all(".stack img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"):
            break
        page.wait_for_timeout(100)
    else:
        pytest.fail("the image and heatmap never rendered")
    regions = page.locator("#attention tbody tr").evaluate_all("rows => rows.map(r => r.dataset.region)")
    assert regions == ["tumor_candidates", "brain", "skull", "background"]
    summary = page.inner_text("#summary")
    assert "meningioma" in summary and "%" in summary

    # the opacity slider blends the heatmap over the image
    page.eval_on_selector("#opacity", "e => { e.value = 80; e.dispatchEvent(new Event('input')); }")
    assert page.eval_on_selector("#heatmap", "e => e.style.opacity") == "0.8"
    assert page.inner_text("#opacity-value") == "80%"

    # another method re-explains the same slice
    response = explain_done(page, lambda: page.select_option("#method", "gradcam++"), method="gradcam%2B%2B")
    assert response.status == 200

    # upload a file from disk
    response = explain_done(page, lambda: page.set_input_files(
        "#file", files=[{"name": "slice.png", "mimeType": "image/png", "buffer": png(head_slice(200))}]),
        method="gradcam%2B%2B")
    assert response.status == 200 and response.json()["input"]["filename"] == "slice.png"

    # a colour photograph is refused with a readable message, and the page keeps working
    explain_done(page, lambda: page.set_input_files(
        "#file", files=[{"name": "holiday.jpg", "mimeType": "image/jpeg", "buffer": jpeg(colour_photo())}]),
        method="gradcam%2B%2B")
    page.wait_for_selector("#error:not([hidden])")
    assert "colour photograph" in page.inner_text("#error")
    assert page.locator("#result").is_hidden()

    # everything the page loaded came from this server (no CDN)
    assert page.requested and all(u.startswith(server.url) or u.startswith("data:") for u in page.requested), page.requested
    assert not [e for e in page.console_errors if "422" not in e], page.console_errors
