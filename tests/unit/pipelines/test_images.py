"""image_decode and resize on images Pillow writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.pipelines.images import ImageDecode, Resize
from modelserve.pipelines.steps import Params
from modelserve.types import as_object_array


def encoded(array: np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pattern(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(height * 1000 + width)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def decode(items: list[bytes], **params: object) -> np.ndarray:
    step = ImageDecode(Params("image_decode", params))
    return step({"images": as_object_array(items).reshape(-1, 1)})["images"]


def test_png_decodes_exactly_and_colors_convert() -> None:
    image = pattern(6, 5)
    out = decode([encoded(image), encoded(image)])
    assert out.shape == (2, 6, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], image)
    np.testing.assert_array_equal(decode([encoded(image)], color="BGR")[0], image[:, :, ::-1])
    grey = decode([encoded(image)], color="L")
    assert grey.shape == (1, 6, 5, 1)


def test_jpeg_decodes_close_to_the_original() -> None:
    image = np.full((32, 48, 3), (200, 40, 90), dtype=np.uint8)
    out = decode([encoded(image, "JPEG", quality=95)])
    assert out.shape == (1, 32, 48, 3)
    assert np.abs(out[0].astype(int) - image).max() <= 4


def test_images_of_different_sizes_make_a_ragged_batch_resize_takes() -> None:
    out = decode([encoded(pattern(10, 20)), encoded(pattern(30, 15))])
    assert out.dtype == object and [i.shape for i in out] == [(10, 20, 3), (30, 15, 3)]
    resized = Resize(Params("resize", {"size": 8}))({"images": out})
    assert resized["images"].shape == (2, 8, 8, 3)


def test_a_corrupt_element_is_named_by_its_index() -> None:
    good = encoded(pattern(4, 4))
    with pytest.raises(
        InvalidArgument, match="element 1 of input 'images' is not a valid JPEG/PNG"
    ):
        decode([good, b"certainly not an image", good])
    truncated = encoded(pattern(64, 64), "JPEG")[:200]
    with pytest.raises(InvalidArgument, match="element 0 "):
        decode([truncated])


def test_formats_and_size_limits_are_enforced_before_decoding() -> None:
    bmp = encoded(pattern(4, 4), "BMP")
    with pytest.raises(InvalidArgument, match=r"element 0 .* not a valid JPEG/PNG"):
        decode([bmp])
    assert decode([bmp], formats=["BMP"]).shape == (1, 4, 4, 3)
    with pytest.raises(InvalidArgument, match="is 40x30 pixels, over the limit of 1000"):
        decode([encoded(pattern(30, 40))], max_pixels=1000)
    with pytest.raises(ModelLoadError, match="names unknown formats"):
        ImageDecode(Params("image_decode", {"formats": ["SVG"]}))


def test_exif_orientation_turns_camera_images_upright() -> None:
    tall = pattern(20, 10)
    image = Image.fromarray(tall).transpose(Image.Transpose.ROTATE_90)  # stored sideways
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CW to view"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    assert decode([buffer.getvalue()]).shape == (1, 20, 10, 3)
    assert decode([buffer.getvalue()], exif_transpose=False).shape == (1, 10, 20, 3)


def to_original(point: tuple[float, float], geometry: np.ndarray) -> tuple[float, float]:
    scale_x, scale_y, pad_x, pad_y = geometry[:4]
    return ((point[0] - pad_x) / scale_x, (point[1] - pad_y) / scale_y)


def test_letterbox_keeps_the_aspect_ratio_and_records_the_geometry() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, :100] = 255  # left half white
    out = Resize(Params("resize", {"size": 64, "mode": "letterbox"}))({"images": image[None]})
    resized, geometry = out["images"][0], out["geometry"][0]
    assert resized.shape == (64, 64, 3)
    np.testing.assert_allclose(geometry, [0.32, 0.32, 0, 16, 200, 100])
    assert (resized[:16] == 114).all() and (resized[48:] == 114).all()  # padding rows
    assert resized[32, 5, 0] == 255 and resized[32, 60, 0] == 0
    assert to_original((64, 48), geometry) == pytest.approx((200, 100))


def test_stretch_and_crop_geometry_map_back() -> None:
    image = pattern(50, 100)
    stretch = Resize(Params("resize", {"height": 25, "width": 25}))({"images": image[None]})
    assert to_original((25, 25), stretch["geometry"][0]) == pytest.approx((100, 50))
    crop = Resize(Params("resize", {"size": 20, "mode": "crop"}))({"images": image[None]})
    assert crop["images"].shape == (1, 20, 20, 3)
    # the centre of the crop is the centre of the image
    assert to_original((10, 10), crop["geometry"][0]) == pytest.approx((50, 25))


def test_resize_takes_float_images_and_any_channel_count() -> None:
    images = np.random.default_rng(1).random((2, 8, 8, 2), dtype=np.float32)
    out = Resize(Params("resize", {"size": 4, "interpolation": "box"}))({"images": images})
    assert out["images"].dtype == np.float32 and out["images"].shape == (2, 4, 4, 2)
    np.testing.assert_allclose(out["images"][0, 0, 0], images[0, :2, :2].mean(axis=(0, 1)), 1e-5)
    with pytest.raises(ModelLoadError, match="'size' or both 'height' and 'width'"):
        Resize(Params("resize", {"height": 10}))
