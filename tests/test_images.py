"""Every image mode reads as the processor would see it (vlsi_edge.data.images), through the dataset loader too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import load_image

from vlsi_edge.data import load_conversations
from vlsi_edge.data.images import ImageError, open_rgb

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (12, 16), dtype=np.uint8)


def _processor_rgb(path) -> np.ndarray:
    """What transformers' image processors make of the file: convert_to_rgb (alpha onto white)."""
    with Image.open(path) as image:
        return convert_to_rgb(image, return_numpy=True)


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


CASES = {
    "RGB": lambda: Image.fromarray(RGB),
    "L (8-bit gray)": lambda: Image.fromarray(RGB[..., 0]),
    "1 (bilevel)": lambda: Image.fromarray(RGB[..., 0] > 128),
    "RGBA": lambda: Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"),
    "LA (gray + alpha)": lambda: Image.fromarray(np.dstack([RGB[..., 0], ALPHA]), "LA"),
    "P (palette)": lambda: Image.fromarray(RGB).quantize(16),
}


@pytest.mark.parametrize("mode", CASES)
def test_modes_read_as_the_processor_converts_them(tmp_path, mode):
    path = _save(tmp_path, "x.png", CASES[mode]())
    ours = np.asarray(open_rgb(path))
    assert ours.dtype == np.uint8 and ours.shape == (12, 16, 3)
    np.testing.assert_array_equal(ours, _processor_rgb(path))


def test_transparency_goes_onto_white_not_onto_the_hidden_colour(tmp_path):
    rgba = np.dstack([RGB, np.zeros_like(ALPHA)])
    rgba[0, 0, 3] = 255
    ours = np.asarray(open_rgb(_save(tmp_path, "clear.png", Image.fromarray(rgba, "RGBA"))))
    assert (ours.reshape(-1, 3)[1:] == 255).all()  # fully transparent: white, whatever RGB they hold
    np.testing.assert_array_equal(ours[0, 0], RGB[0, 0])


def test_palette_and_gray_with_a_transparent_colour(tmp_path):
    palette = Image.new("P", (4, 2), 0)
    palette.putpalette([0, 0, 0, 200, 30, 10] + [0] * 762)
    palette.putpixel((1, 1), 1)
    ours = np.asarray(open_rgb(_save(tmp_path, "p.png", palette, transparency=0)))
    assert ours[1, 1].tolist() == [200, 30, 10] and ours[0, 0].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(ours, _processor_rgb(tmp_path / "p.png"))

    gray = Image.fromarray(np.array([[7, 90]], dtype=np.uint8))
    ours = np.asarray(open_rgb(_save(tmp_path, "l.png", gray, transparency=7)))
    assert ours.tolist() == [[[255, 255, 255], [90, 90, 90]]]


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    values = (np.arange(12 * 16).reshape(12, 16) * 341).astype(np.uint16)  # 0 .. 65,131
    path = _save(tmp_path, "g16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    ours = np.asarray(open_rgb(path))
    expected = np.round(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(ours, np.repeat(expected[..., None], 3, axis=-1))
    assert (np.asarray(Image.open(path).convert("RGB")) == 255).mean() > 0.9  # what PIL alone would have given


def test_exif_orientation_is_applied_as_load_image_does(tmp_path):
    picture = np.zeros((10, 20, 3), dtype=np.uint8)
    picture[:, :10] = (0, 255, 0)  # left half green, right half red
    picture[:, 10:] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = _save(tmp_path, "phone.jpg", Image.fromarray(picture), exif=exif, quality=100)
    ours = open_rgb(path)
    assert ours.size == (10, 20)  # upright: portrait
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(load_image(str(path))))
    assert np.asarray(ours)[2, 5, 1] > 200 and np.asarray(ours)[17, 5, 0] > 200  # green on top, red below


def test_refused_with_a_sentence_naming_the_file(tmp_path):
    big = _save(tmp_path, "big.png", Image.new("1", (8000, 7000)))  # 56 megapixels, a few kB
    with pytest.raises(ImageError, match=r"big.png: too many pixels \(8000x7000, 56 megapixels"):
        open_rgb(big)
    assert np.asarray(open_rgb(big, max_pixels=60_000_000)).shape == (7000, 8000, 3)

    floats = _save(tmp_path, "f.tiff", Image.fromarray(np.ones((4, 4), dtype=np.float32)))
    with pytest.raises(ImageError, match="f.tiff: 32-bit float pixels"):
        open_rgb(floats)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageError, match="notes.png: not an image PIL can read"):
        open_rgb(text)
    cut = _save(tmp_path, "cut.png", Image.fromarray(RGB))
    cut.write_bytes(cut.read_bytes()[:-40])
    with pytest.raises(ImageError, match="cut.png: not an image PIL can read"):
        open_rgb(cut)


def test_the_dataset_loader_reads_every_mode_the_same_way(tmp_path):
    images = {name.split()[0]: _save(tmp_path, f"{i}.png", make()) for i, (name, make) in enumerate(CASES.items())}
    images["I;16"] = _save(tmp_path, "g16.png", Image.fromarray((RGB[..., 0].astype(np.uint16) * 257)))
    records = [{"image": p.name, "question": "what?", "answer": mode} for mode, p in images.items()]
    (tmp_path / "data.json").write_text(json.dumps(records))
    for sample in load_conversations(tmp_path / "data.json"):
        np.testing.assert_array_equal(np.asarray(sample.image), np.asarray(open_rgb(images[sample.answer])))
    np.testing.assert_array_equal(np.asarray(open_rgb(images["I;16"])), np.repeat(RGB[..., :1], 3, axis=-1))
