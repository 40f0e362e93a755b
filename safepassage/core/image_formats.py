"""The image formats the service reads, and the file names that hold them (client and server side)."""

from __future__ import annotations

# The formats read, in the order a refusal lists them.
READ_FORMATS = ("JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF", "PGM/PPM", "JPEG 2000", "HEIC/HEIF")
# Their file names: which files of a folder `import`, `calibrate` and `evaluate` send.
# The server takes the format from the bytes, never from the name, and
# lists any file it cannot read by its name; the rest are imported.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff"}
    | {".pgm", ".ppm", ".pbm", ".pnm", ".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx"}
    | {".heic", ".heif", ".hif"}
)
