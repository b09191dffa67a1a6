"""The raw generation text inside an image file: PNG text chunks, EXIF UserComment, a JPEG/GIF comment.

PNG is read by walking its chunks here (no Pillow needed, never more than one chunk in memory, IDAT skipped with a
seek): `tEXt` (Latin-1), `zTXt` (zlib) and `iTXt` (UTF-8, maybe zlib), as A1111 and ComfyUI write them (A1111
modules/images.py `save_image_with_geninfo`; ComfyUI nodes.py `SaveImage`). A chunk over MAX_CHUNK, or one that
decompresses past it, is skipped with a warning instead of being read (Pillow raises a bare ValueError there).
JPEG, WebP, AVIF and GIF go through Pillow: EXIF UserComment (tag 0x9286 in the Exif IFD) is where A1111 (piexif,
"unicode" = `UNICODE\\0` + UTF-16BE) and CivitAI put the text; GIF keeps it in its comment.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import InputError

MAX_CHUNK = 16 << 20  # bytes of one text chunk, decompressed (ComfyUI workflows run to a few MB)
MAX_TEXT_TOTAL = 64 << 20  # bytes of all text chunks together (Pillow's MAX_TEXT_MEMORY)
MAX_OTHER_FILE = 256 << 20  # a JPEG/WebP larger than this is not handed to Pillow
MAX_CHUNKS = 200_000  # a 4096² PNG in 8 KB IDAT chunks has about 6,000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769


@dataclass
class RawMetadata:
    """What a file carries: `texts` (PNG text chunks / Pillow info strings by key), the EXIF UserComment,
    the image size when known, and warnings about what was skipped."""

    name: str
    format: str = ""
    texts: dict = field(default_factory=dict)
    user_comment: Optional[str] = None
    size: Optional[tuple[int, int]] = None
    warnings: list = field(default_factory=list)


def read_raw(source) -> RawMetadata:
    """The metadata of a path, bytes, binary file object or PIL image. Raises InputError (one line) when the
    source cannot be opened or is not an image."""
    if hasattr(source, "getexif") and hasattr(source, "info"):
        return _from_pil(source, RawMetadata(name=getattr(source, "filename", "") or "the image"))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_stream(io.BytesIO(bytes(source)), "the image data")
    if hasattr(source, "read"):
        return _from_stream(source, getattr(source, "name", "the file"))
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"read_parameters takes a file path, bytes or a PIL image, not {type(source).__name__}")
    path = Path(source).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a folder: give an image file (PNG, JPEG, WebP)")
    try:
        with open(path, "rb") as fh:
            return _from_stream(fh, str(path))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: check the path") from None
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None


def _from_stream(fh, name: str) -> RawMetadata:
    head = fh.read(len(PNG_SIGNATURE))
    raw = RawMetadata(name=name)
    if head == PNG_SIGNATURE:
        raw.format = "PNG"
        _read_png(fh, raw)
        return raw
    try:
        fh.seek(0)
        rest = fh.read(MAX_OTHER_FILE + 1)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {name}: {err}") from None
    if len(rest) > MAX_OTHER_FILE:
        raise InputError(f"{name} is over {MAX_OTHER_FILE >> 20} MB and not a PNG: not read")
    try:
        from PIL import Image
    except ImportError:
        raise InputError(f"reading {name} needs Pillow (PNG does not): pip install pillow") from None
    try:
        with Image.open(io.BytesIO(rest)) as img:
            raw.format = img.format or ""
            return _from_pil(img, raw)
    except InputError:
        raise
    except Exception:  # Pillow raises many kinds for non-images and damaged files; all mean the same here
        raise InputError(f"{name} is not an image Pillow can open (PNG, JPEG, WebP, AVIF, GIF)") from None


# ---------------------------------------------------------------------------------------------- PNG


def _read_png(fh, raw: RawMetadata) -> None:
    total = 0
    for _ in range(MAX_CHUNKS):
        header = fh.read(8)
        if len(header) < 8:
            raw.warnings.append("the file ends before its IEND chunk (truncated); read what was there")
            return
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return
        if kind == b"IHDR" and length >= 8:
            data = fh.read(length + 4)
            raw.size = struct.unpack(">II", data[:8])
            continue
        if kind not in _TEXT_CHUNKS and kind != b"eXIf":
            fh.seek(length + 4, io.SEEK_CUR)  # image data and anything else: skipped, never read
            continue
        if length > MAX_CHUNK or total + length > MAX_TEXT_TOTAL:
            raw.warnings.append(f"a {kind.decode()} chunk of {length:,} bytes was skipped (over "
                                f"{MAX_CHUNK >> 20} MB; no generator writes that much)")
            fh.seek(length + 4, io.SEEK_CUR)
            continue
        data = fh.read(length)
        fh.read(4)  # CRC: not checked (neither A1111 nor CivitAI reject text over it)
        if len(data) < length:
            raw.warnings.append(f"the file ends inside a {kind.decode()} chunk (truncated); that chunk was not read")
            return
        total += length
        if kind == b"eXIf":
            raw.user_comment = raw.user_comment or _user_comment_from_exif(data, raw)
            continue
        decoded = _decode_text_chunk(kind, data, raw)
        if decoded is not None:
            raw.texts[decoded[0]] = decoded[1]
    raw.warnings.append(f"more than {MAX_CHUNKS:,} PNG chunks: the rest of the file was not read")


def _decode_text_chunk(kind: bytes, data: bytes, raw: RawMetadata) -> Optional[tuple[str, str]]:
    key, sep, rest = data.partition(b"\0")
    if not sep or not key:
        raw.warnings.append(f"a {kind.decode()} chunk without a key was skipped")
        return None
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        text = _inflate(rest[1:], name, raw)
        return None if text is None else (name, text.decode("latin-1"))
    # iTXt: compression flag, method, language tag \0, translated key \0, UTF-8 text
    if len(rest) < 2:
        raw.warnings.append(f"the iTXt chunk {name!r} is damaged and was skipped")
        return None
    compressed, body = rest[0], rest[2:]
    _language, _, body = body.partition(b"\0")
    _translated, _, body = body.partition(b"\0")
    if compressed:
        body = _inflate(body, name, raw)
        if body is None:
            return None
    return name, body.decode("utf-8", errors="replace")


def _inflate(data: bytes, name: str, raw: RawMetadata) -> Optional[bytes]:
    """zlib data up to MAX_CHUNK bytes out; None (with a warning) when it is damaged or larger."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CHUNK)
    except zlib.error:
        raw.warnings.append(f"the compressed text chunk {name!r} is damaged and was skipped")
        return None
    if inflater.unconsumed_tail:
        raw.warnings.append(f"the compressed text chunk {name!r} inflates past {MAX_CHUNK >> 20} MB and was skipped")
        return None
    return out


# ---------------------------------------------------------------------------------------------- EXIF (Pillow)


def _from_pil(img, raw: RawMetadata) -> RawMetadata:
    raw.format = raw.format or (img.format or "")
    raw.size = tuple(img.size)
    info = dict(getattr(img, "info", {}) or {})
    try:
        info.update(getattr(img, "text", {}) or {})  # PNG text after the image data
    except Exception:  # a damaged PNG opened by the caller: its early chunks are in info already
        raw.warnings.append("the image's late text chunks could not be read")
    for key, value in info.items():
        if isinstance(value, bytes) and key == "comment":
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str) and key not in ("exif", "icc_profile", "xmp"):
            raw.texts[str(key)] = value
    try:
        exif = img.getexif()
        comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT) or exif.get(USER_COMMENT)
    except Exception:  # damaged EXIF: the other sources may still have the text
        raw.warnings.append("the EXIF block is damaged and was skipped")
        exif = comment = None
    if comment is not None:
        raw.user_comment = decode_user_comment(comment)
    _comfy_exif(exif, raw)
    return raw


def _comfy_exif(exif, raw: RawMetadata) -> None:
    """ComfyUI's WebP saver writes "Prompt:{…}" in EXIF Make (0x010F) and "Workflow:{…}" in ImageDescription
    (0x010E) (ComfyUI comfy_extras/nodes_images.py); taken as the PNG chunks of the same names."""
    if exif is None:
        return
    for tag in (0x010F, 0x010E, 0x0110):
        value = exif.get(tag)
        if isinstance(value, str):
            key, sep, body = value.partition(":")
            if sep and key.lower() in ("prompt", "workflow") and key.lower() not in raw.texts:
                raw.texts[key.lower()] = body


def _user_comment_from_exif(data: bytes, raw: RawMetadata) -> Optional[str]:
    try:
        from PIL import Image

        exif = Image.Exif()
        exif.load(data)
        comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT) or exif.get(USER_COMMENT)
    except ImportError:
        raw.warnings.append("the PNG's eXIf chunk needs Pillow to read: pip install pillow")
        return None
    except Exception:
        raw.warnings.append("the PNG's eXIf chunk is damaged and was skipped")
        return None
    return decode_user_comment(comment) if comment is not None else None


def decode_user_comment(value) -> Optional[str]:
    """EXIF UserComment → text. 8-byte charset header: `UNICODE\\0` (UTF-16; piexif and A1111 write big-endian,
    some tools little-endian: a BOM decides, else which byte of each pair is zero), `ASCII\\0\\0\\0`, or 8 zero bytes
    (undefined: UTF-8 tried). A str (Pillow may decode it already) is returned as it is, less a charset prefix."""
    if isinstance(value, str):
        for prefix in ("UNICODE\0", "ASCII\0\0\0", "\0" * 8):
            if value.startswith(prefix):
                value = value[len(prefix):]
        return value.rstrip("\0") or None
    data = bytes(value)
    head, body = data[:8], data[8:]
    if head == b"UNICODE\0":
        return _utf16(body).rstrip("\0") or None
    if head in (b"ASCII\0\0\0", b"\0" * 8, b"JIS\0\0\0\0\0"):
        return body.decode("utf-8", errors="replace").rstrip("\0") or None
    return data.decode("utf-8", errors="replace").rstrip("\0") or None


def _utf16(body: bytes) -> str:
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body.decode("utf-16", errors="replace")
    sample = body[:2000]
    zeros_even = sum(1 for b in sample[0::2] if b == 0)
    zeros_odd = sum(1 for b in sample[1::2] if b == 0)
    return body.decode("utf-16-le" if zeros_odd > zeros_even else "utf-16-be", errors="replace")
