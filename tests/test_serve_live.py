"""Against a real `tumorlens serve` process (uvicorn, sockets; one server for the whole file):
bad input gets a clear 4xx in one JSON shape, never a 500 or a stack trace, and the server keeps
serving; and the page at / works end to end in headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve_support import API_KEY, LiveServer, chest_xray, colour_photo, dicom, head_slice, head_volume, jpeg, \
    make_checkpoint, mri_slice, nifti, png

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    srv = LiveServer(make_checkpoint(tmp / "model.pt", confident_class=0), tmp, "--max-upload-mb", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=KEY, timeout=30) as c:
        yield c


def post(client, data: bytes, name: str = "slice.png", field: str = "file", path: str = "/v1/predict", **kw):
    return client.post(path, files={field: (name, data, "application/octet-stream")}, **kw)


def assert_error(r: httpx.Response, status: int, code: str, words: str = "") -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    assert words.lower() in body["error"]["message"].lower(), body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


def png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is tiny (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_good_slice_gets_a_prediction_and_an_audit_row(client):
    r = post(client, png(mri_slice()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predicted_class"] == "glioma" and body["status"] == "ok"
    assert set(body["probabilities"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert body["model"]["version"].startswith("simple_cnn-")
    assert r.headers["x-request-id"] == body["request_id"]


def test_auth_is_required_on_a_real_server(server):
    data = png(head_slice())
    r = httpx.post(server.url + "/v1/predict", files={"file": ("a.png", data)})
    assert_error(r, 401, "missing_api_key", "X-API-Key")
    r = httpx.post(server.url + "/v1/predict", files={"file": ("a.png", data)}, headers={"X-API-Key": "wrong-key-123"})
    assert_error(r, 401, "invalid_api_key")
    assert httpx.get(server.url + "/health").status_code == 200  # health stays open for probes


def test_empty_upload(client):
    assert_error(post(client, b""), 422, "empty_upload", "empty")


def test_wrong_form_field_is_named(client):
    assert_error(post(client, png(head_slice()), field="image"), 422, "missing_file_field", "'image'")


def test_not_multipart(client):
    r = client.post("/v1/predict", content=png(head_slice()), headers={"Content-Type": "image/png"})
    assert_error(r, 415, "not_multipart", "multipart/form-data")


@pytest.mark.parametrize("data,what", [
    (b"GIF89a" + b"\0" * 100, "GIF"),
    (b"%PDF-1.4 hello", "PDF"),
    (b"just some words in a text file\n" * 5, "text"),
    (bytes(range(256)) * 4, "unknown"),
])
def test_unsupported_type_is_sniffed_not_taken_from_the_filename(client, data, what):
    assert_error(post(client, data, name="brain.png"), 415, "unsupported_type", what)


def test_truncated_jpeg(client):
    data = jpeg(head_slice(256))
    assert_error(post(client, data[: len(data) // 2], name="t.jpg"), 422, "corrupt_image", "truncated")


def test_corrupt_png(client):
    data = bytearray(png(head_slice(256)))
    data[60:90] = b"\xff" * 30  # inside the first IDAT: the CRC no longer matches
    assert_error(post(client, bytes(data)), 422, "corrupt_image")


def test_decompression_bomb_is_refused_from_its_header(client):
    # 50,000 x 50,000 claimed by a 100-byte file: refused before any pixel is decompressed.
    assert_error(post(client, png_with_header_size(50_000, 50_000)), 413, "image_too_large", "2500000000 pixels")


def test_real_decompression_bomb_small_file_many_pixels(client):
    data = png(np.zeros((6000, 6000), np.uint8))  # 36 megapixels in a few tens of kB
    assert len(data) < 200_000
    assert_error(post(client, data), 413, "image_too_large", "6000 x 6000")


def test_oversized_upload_413_with_content_length(client):
    assert_error(post(client, b"\xff\xd8\xff" + b"\0" * 2_000_000, name="big.jpg"), 413, "upload_too_large", "1 MB")


def test_oversized_upload_413_while_streaming_without_content_length(server):
    boundary = "tumorlensboundary"

    def body():  # chunked transfer: the server cannot know the size in advance
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
               f"Content-Type: image/png\r\n\r\n").encode()
        for _ in range(40):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        r = httpx.post(server.url + "/v1/predict", content=body(), timeout=30,
                       headers={**KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    except httpx.HTTPError:  # the server may close the socket before the client finishes sending
        pytest.fail("the server must answer 413, not drop the connection")
    assert_error(r, 413, "upload_too_large")


def test_dicom_without_pixel_data(client):
    assert_error(post(client, dicom(None), name="x.dcm"), 422, "dicom_without_pixels", "no pixel data")


def test_dicom_slice_is_predicted(client):
    r = post(client, dicom(mri_slice().astype(np.uint16) * 16), name="x.dcm")
    assert r.status_code == 200, r.text
    assert r.json()["input"]["format"] == "DICOM" and r.json()["status"] == "ok"


def test_colour_photo_is_refused(client):
    body = assert_error(post(client, jpeg(colour_photo(), 90), name="photo.jpg"), 422, "out_of_distribution", "colour")
    assert "no tumor class" in body["error"]["message"]


def test_chest_xray_gets_no_tumor_class(client):
    r = post(client, png(chest_xray()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "out_of_distribution"
    assert body["predicted_class"] is None  # the confident model's answer is withheld
    assert any(w["code"] == "unlike_training_data" for w in body["warnings"])


def test_xray_dicom_of_a_head_shape_is_flagged_by_modality(client):
    r = post(client, dicom(head_slice().astype(np.uint16), modality="CR", body_part="CHEST"), name="x.dcm")
    assert r.status_code == 200 and r.json()["predicted_class"] is None
    assert "CR" in r.text and "CHEST" in r.text


def test_blank_image_is_refused(client):
    assert_error(post(client, png(np.full((128, 128), 77, np.uint8))), 422, "blank_image", "blank")


def test_nifti_volume_gets_one_prediction_per_slice(client):
    for gz in (False, True):
        r = post(client, nifti(head_volume(5), gz=gz), name="vol.nii.gz" if gz else "vol.nii")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["input"]["format"] == "NIfTI" and body["input"]["slices"] == 5
        assert [s["slice"] for s in body["slices"]] == [0, 1, 2, 3, 4]
        assert all(s["predicted_class"] == "glioma" for s in body["slices"])


def test_truncated_nifti(client):
    data = nifti(head_volume(5))
    assert_error(post(client, data[: len(data) - 4000], name="v.nii"), 422, "corrupt_image", "nifti")


def test_server_survives_everything_and_leaks_no_trace(server, client):
    # hammer with a mix of garbage and good requests, then check it still answers correctly
    for data in (b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, b"\xff\xd8\xff\xe0" + b"\x00" * 40, dicom(None)):
        r = post(client, data)
        assert 400 <= r.status_code < 500, r.text
    r = post(client, png(head_slice()))
    assert r.status_code == 200
    assert server.alive()
    assert "Traceback" not in server.log()


# -- the page, in a real browser ---------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium (Debian) to run the browser test")


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


@pytest.mark.browser
@needs_chromium
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
    assert page.inner_text("#predicted") == "glioma"
    assert page.locator("#bars .bar").count() == 4
    assert page.get_attribute("#bars .bar.top", "data-class") == "glioma"
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
    assert "glioma" in summary and "%" in summary
    # the segmenter's outline comes with its caveat, found or not
    assert "segmenter outline (research use; misses small tumors)" in page.inner_text("#outline-label")

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
    # the synthetic blob is outlined on the picture, inside it, around the blob (0.6, 0.42 of the side)
    assert response.json()["tumor"]["found"]
    page.wait_for_selector("#outline polygon", state="attached")
    stack = page.locator(".stack").bounding_box()
    drawn = page.locator("#outline polygon").first.bounding_box()
    assert stack["x"] <= drawn["x"] and drawn["x"] + drawn["width"] <= stack["x"] + stack["width"]
    assert stack["y"] <= drawn["y"] and drawn["y"] + drawn["height"] <= stack["y"] + stack["height"]
    centre = ((drawn["x"] + drawn["width"] / 2 - stack["x"]) / stack["width"],
              (drawn["y"] + drawn["height"] / 2 - stack["y"]) / stack["height"])
    assert abs(centre[0] - 0.6) < 0.05 and abs(centre[1] - 0.42) < 0.05, centre
    assert 0.1 < drawn["width"] / stack["width"] < 0.3  # the blob's diameter is 0.2 of the side
    assert "of the heatmap lies inside it" in page.inner_text("#outline-label")

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
