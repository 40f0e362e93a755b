"""Decoding untrusted image bytes into RGB pixels, with limits checked first.

The order of checks is the point of this module: byte size, then the format
from the magic bytes, then the dimensions from the header, and only then the
pixel data. A 20000x20000 PNG compresses to a few kilobytes, so the pixel
limit must be enforced before anything is decompressed.

`read_header` does those checks alone and says how much memory decoding
will take (`ImageHeader.decode_bytes`), so a server can budget memory across
concurrent requests before any pixel is decompressed.

Only JPEG and PNG are accepted: they are what cameras and passport readers
produce, and every other Pillow plugin is attack surface we do not need.
The Pillow plugin classes are instantiated directly (not through
``Image.open``) so that only the JPEG or PNG parser ever runs on accepted
input, and so that our own pixel limit, not Pillow's process-wide
``MAX_IMAGE_PIXELS``, decides.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin

from faces.errors import ImageDecodeError, ImageTooLarge, ImageTooSmall

logger = logging.getLogger(__name__)

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Only used to name a refused format in the error message; nothing here is
# parsed beyond these prefixes.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
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
# measured on 25 MP images and rounded up: RGB and grayscale 10-11, CMYK 14, with alpha or a
# palette (composited onto white) 20-23.
_PEAK_BYTES_PER_PIXEL = 12
_PEAK_BYTES_PER_PIXEL_CMYK = 16
_PEAK_BYTES_PER_PIXEL_ALPHA = 24
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa", "P"})


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding a pixel."""

    format: str  # "JPEG" or "PNG"
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
        if self.transparent or self.mode in _ALPHA_MODES:
            return self.pixels * _PEAK_BYTES_PER_PIXEL_ALPHA
        if self.mode == "CMYK":
            return self.pixels * _PEAK_BYTES_PER_PIXEL_CMYK
        return self.pixels * _PEAK_BYTES_PER_PIXEL


def read_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    """Check the byte size, the format and the dimensions from the header; decode nothing.

    Raises as `decode_image` does for those checks.
    """
    image_format = _check_encoded(data, limits)
    with _open_header(data, image_format) as image:
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
    """Decode JPEG or PNG bytes into a C-contiguous HxWx3 uint8 RGB array.

    EXIF orientation is applied, so the array is upright as a viewer shows it.
    Transparent images are composited onto white; 16-bit images are reduced
    to 8 bits; palette, grayscale and CMYK images are converted to RGB.

    Raises ImageDecodeError (empty, not JPEG/PNG, corrupt, truncated),
    ImageTooLarge (bytes or pixels over the limit, checked before decoding)
    and ImageTooSmall (a side under ``limits.min_side``).
    """
    image_format = _check_encoded(data, limits)
    with _open_header(data, image_format) as image:
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


def _sniff_format(data: bytes) -> str:
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    found = "not recognised"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        found = "WebP"
    elif data[4:8] == b"ftyp":
        found = "HEIF/AVIF"
    else:
        for magic, name in _OTHER_MAGIC:
            if data.startswith(magic):
                found = name
                break
    raise ImageDecodeError(f"image format is {found}; only JPEG and PNG are accepted")


def _open_header(data: bytes, image_format: str) -> ImageFile.ImageFile:
    """Parse only the header: size and mode are known, no pixel is decoded."""
    stream = io.BytesIO(data)
    try:
        if image_format == "JPEG":
            return JpegImagePlugin.JpegImageFile(stream)
        return PngImagePlugin.PngImageFile(stream)
    except _DECODE_FAILURES as error:
        raise ImageDecodeError(_describe_failure(image_format, error)) from None


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
