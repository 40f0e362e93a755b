"""Decoding untrusted image bytes into RGB pixels, with limits checked first.

The order of checks is the point of this module: byte size, then the format
from the magic bytes, then the dimensions from the header, and only then the
pixel data. A 20000x20000 PNG compresses to a few kilobytes, so the pixel
limit must be enforced before anything is decompressed.

`read_header` does those checks alone and says how much memory decoding
will take (`ImageHeader.decode_bytes`), so a server can budget memory across
concurrent requests before any pixel is decompressed.

The formats people's photos come in are read (JPEG, PNG, WebP, GIF, BMP,
TIFF, PGM/PPM, JPEG 2000 from ePassport chips, HEIC/HEIF from phones), and
the format is always taken from the bytes, never from a file name. Each
format's Pillow plugin class is instantiated directly (not through
``Image.open``) so that only the parser of the format the magic bytes name
ever runs on the input, and so that our own pixel limit, not Pillow's
process-wide ``MAX_IMAGE_PIXELS``, decides. HEIC goes through pillow-heif,
imported on the first HEIF image and never registered with Pillow, so no
other ``Image.open`` in the process reaches libheif. Multi-frame files (GIF,
TIFF, animated WebP, HEIF collections) give their first (primary) frame.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    Jpeg2KImagePlugin,
    JpegImagePlugin,
    PngImagePlugin,
    PpmImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from safepassage.core.image_formats import READ_FORMATS
from safepassage.face.errors import ImageDecodeError, ImageTooLarge, ImageTooSmall

logger = logging.getLogger(__name__)


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),  # a bare codestream (what ePassport chips hold)
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),  # the JP2 file format
)
# Netpbm: "P" and the kind digit, then whitespace. P1/P4 bitmaps, P2/P5 graymaps, P3/P6 pixmaps.
_NETPBM_KINDS = {b"1": "PBM", b"2": "PGM", b"3": "PPM", b"4": "PBM", b"5": "PGM", b"6": "PPM"}
# ISO BMFF major brands of HEIF images (HEVC-coded) and of HEIF's generic image brands.
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# Only used to name a refused format in the error message; nothing here is
# parsed beyond these prefixes.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML text"),
    (b"<!DOCTYPE", "HTML text"),
    (b"<html", "HTML text"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
)

# What Pillow raises on malformed data, by plugin and version; collected here
# so that no decoder failure escapes as anything but ImageDecodeError.
_DECODE_FAILURES = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

_MIB = 1024 * 1024

_truncation_warning_logged = False


@dataclass(frozen=True)
class ImageLimits:
    """What ``decode_image`` accepts. Defaults suit photos up to ~40 MP."""

    max_bytes: int = 10 * _MIB
    max_pixels: int = 40_000_000
    min_side: int = 32

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.min_side <= 0:
            raise ValueError(f"image limits must be positive, got {self}")


# Peak bytes per pixel that decode_image takes (Pillow's pixels, the RGB array, their copies),
# measured on 25 MP images and rounded up: RGB and grayscale 10-11, CMYK 14, 32-bit integer or
# float (TIFF) 16-17, with alpha or a palette (composited onto white) 20-23.
_PEAK_BYTES_PER_PIXEL = 12
_PEAK_BYTES_PER_PIXEL_CMYK = 16
_PEAK_BYTES_PER_PIXEL_WIDE = 20
_PEAK_BYTES_PER_PIXEL_ALPHA = 24
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa", "P"})
_WIDE_MODES = frozenset({"I", "F", "I;32", "I;32B", "I;32L", "I;32S", "F;32", "F;32B"})
# Decoders that hold a full-size image of their own while Pillow copies it: libwebp's RGBA canvas
# (measured 18 bytes a pixel for RGB, 31 with alpha) and openjpeg's 32-bit planes (19 RGB, 24 RGBA).
_DECODER_BYTES_PER_PIXEL = {"WebP": 8, "JPEG 2000": 12}


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding a pixel."""

    format: str  # what the magic bytes name: "JPEG", "PNG", "WebP", "HEIF", ... (sniff_format)
    width: int
    height: int
    mode: str  # Pillow's mode before conversion: "RGB", "L", "RGBA", "P", "CMYK", ...
    transparent: bool  # a transparency chunk: composited onto white, like an alpha channel

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decode_bytes(self) -> int:
        """The memory `decode_image` takes at its peak for this image (an upper estimate)."""
        decoder = _DECODER_BYTES_PER_PIXEL.get(self.format, 0)
        if self.transparent or self.mode in _ALPHA_MODES:
            return self.pixels * (_PEAK_BYTES_PER_PIXEL_ALPHA + decoder)
        if self.mode == "CMYK":
            return self.pixels * (_PEAK_BYTES_PER_PIXEL_CMYK + decoder)
        if self.mode in _WIDE_MODES:
            return self.pixels * (_PEAK_BYTES_PER_PIXEL_WIDE + decoder)
        return self.pixels * (_PEAK_BYTES_PER_PIXEL + decoder)


def read_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    """Check the byte size, the format and the dimensions from the header; decode nothing.

    Raises as `decode_image` does for those checks.
    """
    image_format = _check_encoded(data, limits)
    with _open_header(data, image_format, limits) as image:
        _check_dimensions(image.size, limits)
        width, height = image.size
        return ImageHeader(image_format, width, height, image.mode, "transparency" in image.info)


def _check_encoded(data: bytes, limits: ImageLimits) -> str:
    """The format, once the byte size is within the limit."""
    if not data:
        raise ImageDecodeError("image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {len(data) / _MIB:.1f} MiB ({len(data)} bytes);"
            f" the limit is {limits.max_bytes / _MIB:.1f} MiB"
        )
    return _sniff_format(data)


def decode_image(data: bytes, limits: ImageLimits) -> npt.NDArray[np.uint8]:
    """Decode an image of ``READ_FORMATS`` (by its bytes) into a C-contiguous HxWx3 uint8 RGB array.

    EXIF orientation is applied, so the array is upright as a viewer shows it.
    Transparent images are composited onto white; 16-bit images are reduced
    to 8 bits; palette, grayscale and CMYK images are converted to RGB.

    Multi-frame images give their first frame (HEIF: its primary image).

    Raises ImageDecodeError (empty, not a format read, corrupt, truncated; it names the format found),
    ImageTooLarge (bytes or pixels over the limit, checked before decoding)
    and ImageTooSmall (a side under ``limits.min_side``).
    """
    image_format = _check_encoded(data, limits)
    with _open_header(data, image_format, limits) as image:
        _check_dimensions(image.size, limits)
        _warn_if_truncation_tolerated()
        try:
            image.load()
            # HOG does not find faces lying on their side: honour the camera's
            # orientation tag before anything looks for faces.
            ImageOps.exif_transpose(image, in_place=True)
            pixels = _to_rgb(image)
        except _DECODE_FAILURES as error:
            raise ImageDecodeError(_describe_failure(image_format, error)) from None
    logger.debug(
        "decoded %s image %dx%d (%d bytes)", image_format, pixels.shape[1], pixels.shape[0], len(data)
    )
    return pixels


def _warn_if_truncation_tolerated() -> None:
    # face_recognition sets this flag on import, and any other library may:
    # Pillow then pads truncated files instead of failing. It is process-wide,
    # so it cannot be reset safely for this call alone; say so once.
    global _truncation_warning_logged
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _truncation_warning_logged:
        _truncation_warning_logged = True
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set by another module;"
            " truncated images will decode as padded instead of being refused"
        )


def sniff_format(data: bytes) -> str | None:
    """The format the leading bytes name ("JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF", "PGM", "PPM",
    "PBM", "JPEG 2000", "HEIF"), or None where they name none of the formats read."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data[:1] == b"P" and data[1:2] in _NETPBM_KINDS and data[2:3] in (b" ", b"\t", b"\n", b"\r"):
        return _NETPBM_KINDS[data[1:2]]
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS and not _avif(data):
        return "HEIF"
    return None


def _avif(data: bytes) -> bool:
    # An AVIF file may carry the generic mif1 major brand; its compatible brands say AVIF.
    if data[8:12] in _AVIF_BRANDS:
        return True
    box_size = int.from_bytes(data[0:4], "big")
    brands = data[16 : min(box_size, 256)]
    return any(brands[i : i + 4] in _AVIF_BRANDS for i in range(0, len(brands) - 3, 4))


def _sniff_format(data: bytes) -> str:
    found = sniff_format(data)
    if found is not None:
        return found
    readable = ", ".join(READ_FORMATS)
    if data[4:8] == b"ftyp" and (_avif(data) or data[8:12] in _AVIF_BRANDS):
        raise ImageDecodeError(f"image format is AVIF, which is not read; the formats read are {readable}")
    found = next((name for magic, name in _OTHER_MAGIC if data.startswith(magic)), None)
    raise ImageDecodeError(
        f"not an image format we read: the first bytes look like {found or _first_bytes(data)};"
        f" the formats read are {readable}"
    )


def _first_bytes(data: bytes) -> str:
    """What unrecognised leading bytes resemble, without quoting more than four of them."""
    head = data[:64]
    if not head.strip(b"\x00"):
        return "zero bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "text"
    return "binary data beginning " + " ".join(f"{byte:02x}" for byte in data[:4])


def _open_header(data: bytes, image_format: str, limits: ImageLimits) -> ImageFile.ImageFile:
    """Parse only the header: size and mode are known, no pixel is decoded."""
    if image_format == "WebP":
        # libwebp allocates the whole canvas when Pillow opens a WebP: check its size first.
        _check_dimensions(_webp_canvas(data), limits)
    stream = io.BytesIO(data)
    try:
        image = _plugin(image_format)(stream)
    except _DECODE_FAILURES as error:
        raise ImageDecodeError(_describe_failure(image_format, error)) from None
    except MemoryError:
        raise ImageDecodeError(f"{image_format} image header asks for more memory than there is") from None
    return image


def _plugin(image_format: str) -> Callable[[io.BytesIO], ImageFile.ImageFile]:
    """The one Pillow plugin class that parses ``image_format``."""
    if image_format == "HEIF":
        # Loaded on the first HEIF image only: importing it loads libheif.
        from pillow_heif import HeifImageFile

        return cast(Callable[[io.BytesIO], ImageFile.ImageFile], HeifImageFile)
    plugins: dict[str, Callable[[io.BytesIO], ImageFile.ImageFile]] = {
        "JPEG": JpegImagePlugin.JpegImageFile,
        "PNG": PngImagePlugin.PngImageFile,
        "WebP": WebPImagePlugin.WebPImageFile,
        "GIF": GifImagePlugin.GifImageFile,
        "BMP": BmpImagePlugin.BmpImageFile,
        "TIFF": TiffImagePlugin.TiffImageFile,
        "PGM": PpmImagePlugin.PpmImageFile,
        "PPM": PpmImagePlugin.PpmImageFile,
        "PBM": PpmImagePlugin.PpmImageFile,
        "JPEG 2000": Jpeg2KImagePlugin.Jpeg2KImageFile,
    }
    return plugins[image_format]


def _webp_canvas(data: bytes) -> tuple[int, int]:
    """The canvas size from a WebP's first chunk (VP8X, VP8L or VP8)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
    else:
        raise ImageDecodeError("WebP image data is corrupt (no VP8, VP8L or VP8X header)")
    return width, height


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels;"
            f" the limit is {limits.max_pixels / 1e6:.1f}"
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(f"image is {width}x{height} pixels; each side must be at least {limits.min_side}")


def _describe_failure(image_format: str, error: BaseException) -> str:
    # Pillow's own messages can quote chunk names or other bytes of the file,
    # so only the exception type is passed on.
    if isinstance(error, Image.DecompressionBombError):
        return f"{image_format} image expands beyond Pillow's decompression limit"
    reason = "truncated" if "truncated" in str(error) else "corrupt"
    return f"{image_format} image data is {reason} ({type(error).__name__})"


def _to_rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # 16-bit grayscale PNG. Pillow's convert("RGB") clips instead of
        # scaling, which turns most 16-bit photos white.
        values = np.asarray(image)
        if values.dtype != np.uint16:
            values = np.clip(np.nan_to_num(values), 0, 65535).astype(np.uint16)
        gray = (values >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, np.newaxis], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        # Dropping alpha would expose whatever colour hides under transparent
        # pixels (often black); white is what a viewer shows.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8, order="C")
