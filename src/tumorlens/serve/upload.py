"""Reading an upload safely: the multipart body is parsed while it streams in, in memory only,
and the size limit is enforced chunk by chunk (so an oversized body is refused before it is
all read, and nothing is ever spooled to a temporary file, unlike Starlette's form parser).

The file's type is then sniffed from its first bytes; the filename and declared content type
are never trusted.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, field
from functools import cached_property

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from tumorlens.serve.errors import ServiceError

FILE_FIELD = "file"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and small form fields around the file
MAX_FIELD_BYTES = 1024  # a non-file form field (e.g. method) is a short word
MAX_PARTS = 8
SUPPORTED = "JPEG, PNG, DICOM (.dcm) or NIfTI (.nii, .nii.gz)"


@dataclass
class Upload:
    data: bytes
    filename: str | None
    declared_type: str | None
    fields: dict[str, str] = field(default_factory=dict)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def too_large(limit: int) -> ServiceError:
    return ServiceError(413, "upload_too_large", f"the upload exceeds the limit of {limit / 1048576:g} MB")


class _PartCollector:
    """python-multipart callbacks that keep each part's headers and bytes, within limits."""

    def __init__(self, max_file_bytes: int):
        self.max_file_bytes = max_file_bytes
        self.parts: list[dict] = []
        self._hname = bytearray()
        self._hvalue = bytearray()
        self.error: ServiceError | None = None
        self.ended = False  # the closing boundary was seen

    # header callbacks
    def on_part_begin(self):
        if len(self.parts) >= MAX_PARTS:
            self.error = ServiceError(400, "too_many_fields", f"the form has more than {MAX_PARTS} fields")
        self.parts.append({"headers": {}, "data": bytearray(), "name": None, "filename": None})

    def on_header_field(self, data, start, end):
        self._hname += data[start:end]

    def on_header_value(self, data, start, end):
        self._hvalue += data[start:end]

    def on_header_end(self):
        self.parts[-1]["headers"][bytes(self._hname).lower()] = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def on_headers_finished(self):
        part = self.parts[-1]
        disp = part["headers"].get(b"content-disposition", b"")
        _, options = parse_options_header(disp)
        name = options.get(b"name")
        filename = options.get(b"filename")
        part["name"] = name.decode("utf-8", "replace") if name is not None else None
        part["filename"] = filename.decode("utf-8", "replace") if filename is not None else None
        ctype = part["headers"].get(b"content-type")
        part["content_type"] = ctype.decode("latin-1", "replace") if ctype else None

    def on_end(self):
        self.ended = True

    def on_part_data(self, data, start, end):
        part = self.parts[-1]
        part["data"] += data[start:end]
        limit = self.max_file_bytes if part["filename"] is not None else MAX_FIELD_BYTES
        if len(part["data"]) > limit and self.error is None:
            if part["filename"] is not None:
                self.error = too_large(self.max_file_bytes)
            else:
                self.error = ServiceError(400, "field_too_long", f"form field {part['name']!r} is longer than {limit} bytes")


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The uploaded file in multipart field 'file' (plus small form fields), or a ServiceError."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise ServiceError(
            415, "not_multipart",
            f"send the image as multipart/form-data in the field '{FILE_FIELD}' "
            f"(got Content-Type {request.headers.get('content-type') or 'none'})",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large(max_bytes)  # refused before reading a single byte of the body

    collector = _PartCollector(max_bytes)
    parser = MultipartParser(params[b"boundary"], callbacks={
        name: getattr(collector, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_end")})
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + MULTIPART_OVERHEAD:
                raise too_large(max_bytes)
            parser.write(chunk)
            if collector.error is not None:
                raise collector.error
        parser.finalize()
    except MultipartParseError:
        raise ServiceError(400, "malformed_multipart", "the multipart/form-data body is malformed") from None
    except ClientDisconnect:
        raise ServiceError(400, "client_disconnected", "the upload was interrupted") from None
    if collector.error is not None:
        raise collector.error
    if not collector.ended:  # python-multipart's finalize() does not check this itself
        raise ServiceError(400, "malformed_multipart",
                           "the multipart/form-data body has no closing boundary (truncated upload?)")

    fields = {p["name"]: bytes(p["data"]).decode("utf-8", "replace") for p in collector.parts
              if p["filename"] is None and p["name"]}
    files = [p for p in collector.parts if p["name"] == FILE_FIELD]
    if not files:
        got = ", ".join(repr(p["name"]) for p in collector.parts if p["name"]) or "none"
        raise ServiceError(
            422, "missing_file_field", f"no multipart field '{FILE_FIELD}' in the form (fields received: {got})"
        )
    if len(files) > 1:  # which one would be predicted is a guess; the audit row must name one image
        raise ServiceError(422, "multiple_files", f"the form has {len(files)} '{FILE_FIELD}' parts; send one file per request")
    part = files[0]
    if not part["data"]:
        raise ServiceError(422, "empty_upload", "the uploaded file is empty (0 bytes)")
    fields.pop(FILE_FIELD, None)
    return Upload(bytes(part["data"]), part["filename"], part.get("content_type"), fields)


# -- sniffing ----------------------------------------------------------------------------------

_OTHER_SIGNATURES = [
    (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\x89HDF", "an HDF5/MATLAB v7.3 file"), (b"MATLAB", "a MATLAB file"), (b"<", "an HTML/XML document"),
    (b"{", "a JSON document"), (b"\x7fELF", "an executable"), (b"MZ", "an executable"),
]


def sniff_format(data: bytes) -> str:
    """'jpeg', 'png', 'dicom' or 'nifti' from the leading bytes, else a 415 naming what it looks like."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if nifti_header_size(data):
        return "nifti"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        what = "a WebP image"
    else:
        what = next((desc for sig, desc in _OTHER_SIGNATURES if data.startswith(sig)), None)
        if what is None:
            head = data[:512]
            printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
            what = "text" if head and printable / len(head) > 0.95 else "an unknown binary format"
    raise ServiceError(415, "unsupported_type", f"unsupported file type: the content looks like {what}; send {SUPPORTED}")


def nifti_header_size(data: bytes) -> int:
    """348 (NIfTI-1 single file) or 540 (NIfTI-2), else 0. Checks the size field and the magic."""
    if len(data) >= 348 and data[344:348] == b"n+1\x00":
        if struct.unpack("<i", data[:4])[0] == 348 or struct.unpack(">i", data[:4])[0] == 348:
            return 348
    if len(data) >= 540 and data[4:12] == b"n+2\x00\r\n\x1a\n":
        if struct.unpack("<i", data[:4])[0] == 540 or struct.unpack(">i", data[:4])[0] == 540:
            return 540
    return 0


def gunzip_head(data: bytes, n: int) -> bytes:
    """The first n decompressed bytes of gzip data (fewer if it is shorter or damaged)."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, n)
    except zlib.error:
        return b""


def nifti_data_size(header: bytes) -> int | None:
    """Bytes a NIfTI-1/2 file needs (data offset + voxels x item size), from its header, or None."""
    import nibabel as nib

    size = nifti_header_size(header)
    if not size:
        return None
    klass = nib.Nifti1Header if size == 348 else nib.Nifti2Header
    try:
        h = klass.from_fileobj(io.BytesIO(header[:size + 4]))
        shape = h.get_data_shape()
        voxels = 1
        for s in shape:
            voxels *= max(int(s), 1)
        return int(h.get_data_offset()) + voxels * h.get_data_dtype().itemsize
    except Exception:  # noqa: BLE001 - a damaged header: the decoder reports it
        return None


def gunzip_limited(data: bytes, max_out: int) -> bytes:
    """Decompress gzip without ever holding more than max_out bytes (a gzip bomb stops here).

    When the stream holds a NIfTI, its header says how many bytes the volume needs: a header that
    asks for more than max_out is refused before anything else is inflated, and nothing past
    what it needs (plus a little) is inflated."""
    needed = nifti_data_size(gunzip_head(data, 544))
    if needed is not None:
        if needed > max_out:
            raise ServiceError(413, "volume_too_large",
                               f"the compressed file expands to {needed / 1048576:,.0f} MB (its NIfTI header says "
                               f"so); the limit is {max_out / 1048576:g} MB")
        limit = needed + 64 * 1024  # a NIfTI may carry a little padding after its data
    else:
        limit = max_out
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit)
    except zlib.error:
        raise ServiceError(422, "corrupt_file", "damaged gzip data (truncated or not gzip)") from None
    if d.unconsumed_tail and needed is None:
        raise ServiceError(413, "volume_too_large",
                           f"the compressed file expands to more than {max_out / 1048576:g} MB")
    if not d.eof and not d.unconsumed_tail:
        raise ServiceError(422, "corrupt_file", "truncated gzip data")
    return out


def unwrap(data: bytes, max_decompressed: int) -> tuple[bytes, str]:
    """(payload, format): gzip is opened (within a size limit) only to find a NIfTI inside."""
    if data[:2] == b"\x1f\x8b":
        inner = gunzip_limited(data, max_decompressed)
        if nifti_header_size(inner):
            return inner, "nifti"
        raise ServiceError(415, "unsupported_type", f"a gzip file that does not hold a NIfTI volume; send {SUPPORTED}")
    return data, sniff_format(data)
