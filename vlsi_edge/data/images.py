"""Reading a picture as the 8-bit RGB a VLM processor expects, whatever the file's mode.

What transformers does with a PIL image, and what we do before it:
- EXIF orientation: `transformers.image_utils.load_image` applies it (`ImageOps.exif_transpose`); a
  processor handed a PIL image does not. Phones store most photos rotated with an orientation tag, so
  we apply it, as `load_image` does.
- Transparency (RGBA, LA, PA, a palette or gray image with a transparent colour): the processors'
  `convert_to_rgb` composites onto white; PIL's `convert("RGB")` would drop alpha and show whatever
  colour the transparent pixels hold. We composite onto white, with the same PIL call.
- 16-bit grayscale (PIL modes I;16*, I): `convert("RGB")` clips every value above 255, so a normal
  16-bit picture turns almost white. We scale 0..65535 to 0..255 first.
- Everything else (L, P, 1, CMYK, YCbCr, RGB) converts with `convert("RGB")`, as the processors do.
- 32-bit float pixels (mode F) have no agreed range: refused with a sentence.

A file over MAX_PIXELS is refused before its pixels are decoded (PIL reads only the header first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlsi_edge.errors import InputError

MAX_PIXELS = 50_000_000  # 50 megapixels: larger than any camera photo people train on; 8k x 6k fits
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(InputError, ValueError):
    """A picture that cannot be used; the message names the file."""


def open_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The picture at `path` as upright 8-bit RGB (see the module docstring), or ImageError."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{path}: too many pixels ({width}x{height}, {width * height / 1e6:.0f} megapixels; "
                                 f"the loader accepts up to {max_pixels / 1e6:.0f}); resize it first")
            return to_rgb(image, path)
    except Image.DecompressionBombError as e:  # PIL's own limit, were max_pixels raised above it
        raise ImageError(f"{path}: too many pixels to be a photo ({e}); resize it first") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such image file") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as e:  # truncated PNG / JPEG, not an image at all
        raise ImageError(f"{path}: not an image PIL can read ({e})") from None


def to_rgb(image: Image.Image, name: str | Path = "image") -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(f"{name}: 32-bit integer pixels outside 0..65535; save it as an 8- or 16-bit image")
        image = Image.fromarray(np.round(values / 257.0).astype(np.uint8), "L")
    elif image.mode == "F":
        raise ImageError(f"{name}: 32-bit float pixels have no agreed range; save it as an 8- or 16-bit image")
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")
