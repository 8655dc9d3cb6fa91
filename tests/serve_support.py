"""Helpers for the tests/test_serve*.py files: tiny checkpoints, synthetic slices in every upload
format, and a real `tumorlens serve` process on a free port."""

from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import torch

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import save_checkpoint
from tumorlens.models.registry import build_model

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
API_KEY = "test-key-0123456789"


def make_checkpoint(path: Path, confident_class: int | None = None, size: int = 64) -> Path:
    """simple_cnn at a small input size; confident_class makes it answer that class at ~99 %."""
    torch.manual_seed(0)
    net = build_model("simple_cnn", len(CLASSES))
    if confident_class is not None:
        with torch.no_grad():
            net.classifier.weight.mul_(0.05)  # small but non-zero: heatmaps still have gradients
            net.classifier.bias.fill_(0.0)
            net.classifier.bias[confident_class] = 6.0
    return save_checkpoint(path, net, "simple_cnn", CLASSES, PreprocessRecipe(size=size),
                           provenance={"note": "test model"}, metrics={"accuracy": 0.5})


def head_slice(size: int = 128, tumor: bool = True, seed: int = 0) -> np.ndarray:
    """uint8 axial-looking slice: dark background, bright scalp ring, grey brain, optional bright blob."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    c = (size // 2, size // 2)
    axes = (int(size * 0.36), int(size * 0.44))
    cv2.ellipse(img, c, axes, 0, 0, 360, 200, -1)
    cv2.ellipse(img, c, (axes[0] - size // 20, axes[1] - size // 20), 0, 0, 360, 110, -1)
    if tumor:
        cv2.circle(img, (int(size * 0.6), int(size * 0.42)), size // 10, 235, -1)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise * (img > 0), 0, 255).astype(np.uint8)


def mri_slice(size: int = 128, tumor: bool = True, seed: int = 0) -> np.ndarray:
    """uint8 real brain MRI slice (a bundled Kaggle Testing sample, resized): what the input check
    (tumorlens.inputcheck) lets through, unlike head_slice's drawn phantom, which it flags."""
    from tumorlens.assets import sample_dir

    files = sorted((sample_dir("kaggle") / ("glioma" if tumor else "notumor")).glob("*.jpg"))
    img = cv2.imread(str(files[seed % len(files)]), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def chest_xray(size: int = 256) -> np.ndarray:
    """A frame-filling radiograph-like picture: soft tissue to the edges, dark lungs, spine, ribs."""
    img = np.full((size, size), 150, np.uint8)
    cv2.ellipse(img, (int(size * 0.3), size // 2), (size // 6, size // 3), 0, 0, 360, 45, -1)
    cv2.ellipse(img, (int(size * 0.7), size // 2), (size // 6, size // 3), 0, 0, 360, 45, -1)
    cv2.rectangle(img, (size // 2 - size // 30, 0), (size // 2 + size // 30, size), 230, -1)
    for k in range(6):
        y = int(size * (0.25 + 0.09 * k))
        cv2.ellipse(img, (size // 2, y), (int(size * 0.4), size // 12), 0, 200, 340, 200, 3)
    return img


def colour_photo(size: int = 128) -> np.ndarray:
    """RGB uint8 with saturated colours (the astronaut from scikit-image, bundled offline)."""
    from skimage import data

    return cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def png(arr: np.ndarray) -> bytes:
    a = np.asarray(arr)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", a)[1].tobytes()


def jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    a = np.asarray(arr)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def dicom(arr: np.ndarray | None, modality: str = "MR", photometric: str = "MONOCHROME2",
          slope: float = 1.0, intercept: float = 0.0, body_part: str | None = None) -> bytes:
    """An uncompressed DICOM file in memory; arr=None gives a header without pixel data."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "TEST"
    if body_part:
        ds.BodyPartExamined = body_part
    if arr is not None:
        a = np.asarray(arr, dtype=np.uint16)
        ds.Rows, ds.Columns = a.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = a.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def nifti(volume: np.ndarray, gz: bool = False) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), np.eye(4))
    data = img.to_bytes()
    return gzip.compress(data, compresslevel=1) if gz else data


def head_volume(n: int = 5, size: int = 128) -> np.ndarray:
    """(x, y, z) volume whose axial slices are real MRI slices (mri_slice; the middle ones with a tumor)."""
    return np.stack([mri_slice(size, tumor=abs(k - n // 2) <= 1, seed=k).T for k in range(n)], axis=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`python -m tumorlens.cli serve ...` in a subprocess: the real CLI, uvicorn and sockets."""

    def __init__(self, model: Path, tmp: Path, *extra: str, auth: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUMORLENS_API_KEYS": API_KEY, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "tumorlens.cli", "serve", "--model", str(model), "--port", str(self.port),
               "--db", f"sqlite:///{tmp / 'audit.sqlite'}", "--threads", "1", "--workers", "1", *extra]
        if not auth:
            cmd.append("--no-auth")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp, env=env)
        self._wait()

    def _wait(self, timeout: float = 240.0) -> None:  # generous: shared CI machines can be very busy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start within {timeout} s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
