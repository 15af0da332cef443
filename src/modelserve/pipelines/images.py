"""Image transforms: ``image_decode`` (JPEG/PNG bytes -> uint8 HWC) and ``resize`` (stretch,
letterbox or crop, recording how each image was scaled and padded).

Both use Pillow (the ``images`` extra), imported when a pipeline that uses them loads: its JPEG
and PNG decoders are libjpeg-turbo and zlib, its resampling is C with antialiasing when it
shrinks, and each call works on a whole image, so nothing here loops over pixels.

A batch of decoded images that differ in size cannot be one array: ``image_decode`` then
returns them as a *ragged batch* (a 1-D object array holding one HWC array per image), which
only ``resize`` takes; ``resize`` always returns one array [N, height, width, C].
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.pipelines.steps import Params, Transform, TypeMap, expect_type
from modelserve.runtimes.base import Arrays

__all__ = ["ImageDecode", "Resize", "pillow"]

COLORS = ("RGB", "BGR", "L", "RGBA")
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
DEFAULT_MAX_PIXELS = 40_000_000
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box")
RESIZE_TYPES = frozenset(("UINT8", "FP32"))


def pillow() -> Any:
    """The PIL package; a load error that says what to install when it is missing."""
    try:
        import PIL.Image
        import PIL.ImageOps
    except ImportError:
        raise ModelLoadError(
            "image transforms need Pillow: pip install 'modelserve[images]'"
        ) from None
    return PIL


class ImageDecode(Transform):
    """``images`` BYTES [N] (or [N, 1]): encoded images -> ``images`` UINT8 [N, H, W, C].

    Parameters: ``color`` RGB (default), BGR, L (grey, C = 1) or RGBA; ``formats`` the
    decoders allowed (default JPEG and PNG; also BMP, GIF, TIFF, WEBP); ``max_pixels`` the
    largest image accepted, checked from the header before decoding (default 40 million);
    ``exif_transpose`` turn camera images upright by their EXIF orientation (default true).
    An element that is not such an image is a 400 naming its index."""

    name = "image_decode"
    inputs = ("images",)

    def __init__(self, params: Params) -> None:
        self._pil = pillow()
        self.color = params.choice("color", "RGB", COLORS)
        formats = params.strings("formats") or ("JPEG", "PNG")
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise params.error("formats", f"names unknown formats {unknown}; use {list(FORMATS)}")
        self.formats = tuple(formats)
        self.max_pixels = params.integer("max_pixels", DEFAULT_MAX_PIXELS, low=1)
        self.exif_transpose = params.boolean("exif_transpose", True)
        params.done()
        self._mode = "RGB" if self.color == "BGR" else self.color

    def outputs(self) -> tuple[str, ...]:
        return ("images",)

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        expect_type(self.name, "images", types.get("images"), frozenset(("BYTES",)))
        return {"images": "UINT8"}

    def __call__(self, inputs: Arrays) -> Arrays:
        encoded = inputs["images"]
        if encoded.ndim == 0 or encoded.size != encoded.shape[0]:
            raise InvalidArgument(
                f"input 'images' has shape {list(encoded.shape)}; it needs one encoded image "
                "per batch row ([N] or [N, 1])"
            )
        decoded = [self._decode(i, item) for i, item in enumerate(encoded.reshape(-1))]
        return {"images": stack_images(decoded)}

    def _decode(self, index: int, item: object) -> npt.NDArray[np.uint8]:
        if not isinstance(item, bytes | bytearray | memoryview):
            raise InvalidArgument(f"element {index} of input 'images' is not bytes")
        image_module = self._pil.Image
        try:
            with image_module.open(io.BytesIO(item), formats=self.formats) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    raise InvalidArgument(
                        f"element {index} of input 'images' is {width}x{height} pixels, over "
                        f"the limit of {self.max_pixels}"
                    )
                if self.exif_transpose and image.getexif().get(0x0112, 1) != 1:
                    image = self._pil.ImageOps.exif_transpose(image)
                array = np.asarray(image.convert(self._mode))
        except InvalidArgument:
            raise
        except (
            OSError,
            ValueError,
            SyntaxError,
            EOFError,
            image_module.DecompressionBombError,
        ) as exc:
            allowed = "/".join(self.formats)
            raise InvalidArgument(
                f"element {index} of input 'images' is not a valid {allowed} image: {exc}"
            ) from None
        if array.ndim == 2:
            array = array[:, :, None]
        if self.color == "BGR":
            array = array[:, :, ::-1]
        return array


def stack_images(images: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    """One [N, H, W, C] array when every image has the same shape, else a ragged batch."""
    if all(image.shape == images[0].shape for image in images):
        return np.stack(images)
    ragged = np.empty(len(images), dtype=object)
    ragged[:] = images
    return ragged


def unstack_images(name: str, array: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """The images of a batch: [N, H, W, C] or a ragged batch."""
    if array.dtype == object:
        images = list(array.reshape(-1))
        if not all(isinstance(i, np.ndarray) and i.ndim == 3 for i in images):
            raise InvalidArgument(f"input '{name}' is not a batch of HWC images")
        return images
    if array.ndim != 4:
        raise InvalidArgument(
            f"input '{name}' has shape {list(array.shape)}; it needs [N, height, width, channels]"
        )
    return list(array)


class Resize(Transform):
    """``images`` [N, H, W, C] (UINT8 or FP32, or a ragged batch) -> ``images``
    [N, height, width, C] and ``geometry`` FP32 [N, 6].

    Parameters: ``height`` and ``width`` (or ``size`` for both); ``mode`` ``stretch`` (default:
    to exactly that size), ``letterbox`` (keep the aspect ratio, pad the rest with ``pad_value``,
    default 114, the image centred: what YOLO-style detectors expect) or ``crop`` (keep the
    aspect ratio, cover the size, cut the centre out: classifiers); ``interpolation`` nearest,
    bilinear (default), bicubic, lanczos or box.

    ``geometry`` holds per image ``[scale_x, scale_y, pad_x, pad_y, width, height]``: a point
    (x, y) of the resized image is ((x - pad_x) / scale_x, (y - pad_y) / scale_y) in the
    original, which was width x height. nms takes it to give boxes in original pixels."""

    name = "resize"
    inputs = ("images",)

    def __init__(self, params: Params) -> None:
        self._pil = pillow()
        size = params.integer("size", 0, low=0, high=16384)
        self.height = params.integer("height", size, low=0, high=16384)
        self.width = params.integer("width", size, low=0, high=16384)
        if not self.height or not self.width:
            raise params.error("size", "or both 'height' and 'width' must be given (positive)")
        self.mode = params.choice("mode", "stretch", ("stretch", "letterbox", "crop"))
        self.pad_value = params.number("pad_value", 114.0, low=0.0, high=255.0)
        interpolation = params.choice("interpolation", "bilinear", INTERPOLATIONS)
        params.done()
        self._resample = getattr(self._pil.Image.Resampling, interpolation.upper())

    def outputs(self) -> tuple[str, ...]:
        return ("images", "geometry")

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        given = types.get("images")
        expect_type(self.name, "images", given, RESIZE_TYPES)
        return {"images": given, "geometry": "FP32"}

    def __call__(self, inputs: Arrays) -> Arrays:
        images = unstack_images("images", inputs["images"])
        out: npt.NDArray[Any] | None = None
        geometry = np.empty((len(images), 6), dtype=np.float32)
        for i, image in enumerate(images):
            if image.dtype not in (np.uint8, np.float32):
                raise InvalidArgument(
                    f"input 'images' is {image.dtype}; resize takes uint8 or float32"
                )
            if out is None:
                out = np.empty((len(images), self.height, self.width, image.shape[2]), image.dtype)
            elif image.shape[2] != out.shape[3] or image.dtype != out.dtype:
                raise InvalidArgument("input 'images' mixes channel counts or datatypes")
            geometry[i] = self._into(image, out[i])
        if out is None:
            raise InvalidArgument("input 'images' is an empty batch")
        return {"images": out, "geometry": geometry}

    def _into(self, image: npt.NDArray[Any], target: npt.NDArray[Any]) -> tuple[float, ...]:
        """Resize one HWC image into ``target``; returns its geometry row."""
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            raise InvalidArgument("input 'images' holds an empty image")
        if self.mode == "stretch":
            target[:] = self._resized(image, self.width, self.height)
            return (self.width / width, self.height / height, 0.0, 0.0, width, height)
        if self.mode == "letterbox":
            ratio = min(self.width / width, self.height / height)
        else:  # crop
            ratio = max(self.width / width, self.height / height)
        new_w = max(1, round(width * ratio))
        new_h = max(1, round(height * ratio))
        resized = self._resized(image, new_w, new_h)
        left, top = (self.width - new_w) // 2, (self.height - new_h) // 2
        if self.mode == "letterbox":
            target[:] = self.pad_value
            target[top : top + new_h, left : left + new_w] = resized
        else:
            target[:] = resized[-top : -top + self.height, -left : -left + self.width]
        return (new_w / width, new_h / height, float(left), float(top), width, height)

    def _resized(self, image: npt.NDArray[Any], width: int, height: int) -> npt.NDArray[Any]:
        if image.shape[1] == width and image.shape[0] == height:
            return image
        image_module = self._pil.Image
        if image.dtype == np.uint8 and image.shape[2] in (1, 3, 4):
            source = image[:, :, 0] if image.shape[2] == 1 else image
            result = np.asarray(
                image_module.fromarray(np.ascontiguousarray(source)).resize(
                    (width, height), self._resample
                )
            )
            return result[:, :, None] if result.ndim == 2 else result
        # other channel counts and float32: one single-channel image per channel
        channels = [
            np.asarray(
                image_module.fromarray(np.ascontiguousarray(image[:, :, c])).resize(
                    (width, height), self._resample
                )
            )
            for c in range(image.shape[2])
        ]
        return np.stack(channels, axis=2).astype(image.dtype, copy=False)
