"""A memory budget for decoding: what the decoded pixels of all requests may hold at once.

Why: decoding multiplies memory. A 130 KB PNG of 4096 x 4096 RGBA 16-bit pixels needs ~480 MB while
it is turned into a float32 slice, a 240 KB gzipped NIfTI of 512 x 512 x 240 float32 voxels ~740 MB
(measured peaks); eight such requests at once took the server from 2.2 to 5.1 GB (issue 19). So each
request first reserves what its decode will need, estimated from the file's header alone (before
any pixel is decompressed), and holds it until its answer is ready: requests that do not fit wait
their turn (up to decode_wait_s, then 503), and one that could never fit gets 413. After a large
reservation is released, glibc is asked to return the freed pages (malloc_trim): tumorlens keeps
freed memory for reuse (tumorlens.memory), which would otherwise keep each bomb's peak for good.
"""

from __future__ import annotations

import ctypes
import io
import logging
import struct
import threading
import time
from contextlib import contextmanager

from tumorlens.serve.errors import ServiceError
from tumorlens.serve.upload import gunzip_head, nifti_data_size, nifti_header_size

log = logging.getLogger("tumorlens.serve")

# Peak bytes of decoding per unit, from measured peaks with a margin (decode.py's conversions:
# PIL planes, an RGB copy, float32 luma and its temporaries; nibabel's copy, float32, reorientation).
RASTER_BYTES_PER_PIXEL = 32  # 4096 x 4096 RGBA 16-bit PNG: 482 MB peak = 29 per pixel
NIFTI_BYTES_PER_VOXEL = 8  # float32 volume and its reoriented copy ...
NIFTI_DATA_FACTOR = 1.6  # ... plus the inflated file and nibabel's view of it (measured f32 738 MB, f64 1218 MB peaks)
DICOM_BYTES_PER_PIXEL = 16  # stored pixels, the modality LUT in float, float32 frames
SMALL = 4 * 1024 * 1024  # anything unparsable: its decoder refuses it before using memory
TRIM_AFTER = 64 * 1024 * 1024


def estimate_decode_bytes(data: bytes, max_pixels: int | None = None) -> int:
    """Peak memory decoding `data` will need, from its header (never decompresses pixels). An
    image over max_pixels needs nothing: the decoder refuses it from the same header first."""
    try:
        if data[:2] == b"\x1f\x8b":
            head = gunzip_head(data, 544)
            needed = nifti_data_size(head)
            return SMALL if needed is None else _nifti_estimate(head, needed)
        if nifti_header_size(data):
            needed = nifti_data_size(data[:544])
            return SMALL if needed is None else _nifti_estimate(data, needed)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return _raster_estimate(width, height, max_pixels)
        if data[:3] == b"\xff\xd8\xff":
            from PIL import Image

            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:  # reads the header only
                width, height = im.size
            return _raster_estimate(width, height, max_pixels)
        if len(data) >= 132 and data[128:132] == b"DICM":
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
            return max(SMALL, int(ds.Rows) * int(ds.Columns) * frames * spp * DICOM_BYTES_PER_PIXEL)
    except Exception:  # noqa: BLE001 - a damaged header: the decoder gives the precise error
        return SMALL
    return SMALL


def _raster_estimate(width: int, height: int, max_pixels: int | None) -> int:
    if max_pixels is not None and width * height > max_pixels:
        return SMALL
    return max(SMALL, width * height * RASTER_BYTES_PER_PIXEL)


def _nifti_estimate(head: bytes, needed: int) -> int:
    size = nifti_header_size(head)
    offset = 352 if size == 348 else 544
    voxels_bytes = needed - offset
    voxels = voxels_bytes  # an upper bound on voxels (item size >= 1); refined below
    try:
        import nibabel as nib

        klass = nib.Nifti1Header if size == 348 else nib.Nifti2Header
        h = klass.from_fileobj(io.BytesIO(head[:size + 4]))
        voxels = voxels_bytes // max(1, h.get_data_dtype().itemsize)
    except Exception:  # noqa: BLE001
        pass
    # an uncompressed upload is in memory already; nibabel and the float copy still scale with it
    return max(SMALL, int(NIFTI_DATA_FACTOR * needed) + voxels * NIFTI_BYTES_PER_VOXEL)


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


class DecodeBudget:
    def __init__(self, total_bytes: int, wait_s: float):
        self.total = int(total_bytes)
        self.wait_s = wait_s
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()
        self._trim = _malloc_trim()

    @contextmanager
    def hold(self, n: int):
        """Reserve n bytes for the duration of the block (see the module docstring)."""
        n = int(n)
        if n > self.total:
            raise ServiceError(413, "image_too_large",
                               f"decoding this file would need about {n / 1048576:,.0f} MB; the service decodes at most "
                               f"{self.total / 1048576:,.0f} MB at once (send a smaller image or fewer slices)")
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.used + n > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceError(503, "decoder_busy", "the service is decoding other large files; try again "
                                       "in a few seconds", headers={"Retry-After": "5"})
                self._cond.wait(left)
            self.used += n
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()
            if n >= TRIM_AFTER and self._trim is not None:
                self._trim(0)  # hand the big decode's pages back to the OS
