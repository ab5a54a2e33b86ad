"""`models.embed.preprocess` with torch ops on the model's device: upload uint8, resize and normalise there.

The host path resizes each crop with OpenCV and normalises in numpy, one crop at a time, on the CPU;
on a GPU that CPU work, not the model, limits an embedder's throughput. Here the CPU only packs the
batch's uint8 crops, as they are, into one buffer (pinned host memory when the device is CUDA, so
the upload is one asynchronous copy per batch), and the device does the rest for the whole batch at once:

    x[n, c, y, x] = (bilinear(crop_n)[y, x, order[c]] * scale - mean[c]) / std[c]

The bilinear resize is OpenCV's `INTER_LINEAR` (half-pixel centres, edge pixels repeated, no
antialiasing when shrinking: `interpolate(antialias=True)` measurably moves the vectors), computed as
a gather of the four neighbours of every output pixel, so crops of different sizes need no padding
and no per-crop kernel. It follows OpenCV's fixed-point arithmetic for uint8 (weights in 1/2048ths,
rounded to a whole grey level), so the two paths give the same uint8 pixels but for about one value
in a thousand, one level apart (`tests/models/embed/test_device_preprocess.py`).

torch is imported by the caller (the torch embedder) and passed in, so this module imports no runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.embed.preprocess import validate_crops
from models.zoo import ModelSpec

# int32 words per crop in the batch buffer's header: height, width, byte offset of its pixels
_HEADER_WORDS = 3
# OpenCV's INTER_LINEAR weights for uint8 are integers: 1.0 is 2048 (INTER_RESIZE_COEF_SCALE)
_WEIGHT_ONE = 2048


def pack_crops(torch: Any, images: Sequence[np.ndarray], *, pin_memory: bool) -> Any:
    """One flat uint8 tensor: a header of (height, width, offset) int32 per crop, then every crop's pixels.

    Header and pixels share one buffer so a batch is one host-to-device copy. The header is padded to
    a multiple of 8 bytes, which keeps the int32 view of it aligned on the device.
    """
    validate_crops(images)
    header_bytes = -(-len(images) * _HEADER_WORDS * 4 // 8) * 8
    sizes = [image.size for image in images]
    buffer = torch.empty(header_bytes + sum(sizes), dtype=torch.uint8, pin_memory=pin_memory)
    flat = buffer.numpy()
    header = flat[:header_bytes].view(np.int32)
    offset = 0
    for index, (image, size) in enumerate(zip(images, sizes, strict=True)):
        header[index * _HEADER_WORDS:(index + 1) * _HEADER_WORDS] = (image.shape[0], image.shape[1], offset)
        flat[header_bytes + offset:header_bytes + offset + size] = image.reshape(-1)
        offset += size
    return buffer


def _source_coordinates(torch: Any, in_size: Any, out_size: int) -> tuple[Any, Any, Any]:
    """Per crop (rows of `in_size`) and output position: the two source indices and the second's weight.

    OpenCV's INTER_LINEAR: source = (out + 0.5) * in / out - 0.5 in float32, clamped at 0; past the
    last pixel both neighbours are the last pixel. The weight is in 1/2048ths, rounded, as OpenCV's.
    """
    positions = torch.arange(out_size, device=in_size.device, dtype=torch.float32)
    in_float = in_size.to(torch.float32).unsqueeze(1)
    source = ((positions + 0.5) * in_float / out_size - 0.5).clamp_(min=0.0)
    last = (in_size - 1).unsqueeze(1)
    first_index = torch.minimum(source.floor().long(), last)
    second_index = torch.minimum(first_index + 1, last)
    weight = ((source - first_index.to(torch.float32)) * _WEIGHT_ONE).round_().to(torch.int32)
    return first_index, second_index, weight


def resize_normalise(torch: Any, packed: Any, count: int, spec: ModelSpec, *, dtype: Any) -> Any:
    """`packed` (from `pack_crops`, already on the device) → (count, 3, H, W) tensor of `dtype` per `spec`."""
    height, width = (int(v) for v in spec.input_hw)
    header_bytes = -(-count * _HEADER_WORDS * 4 // 8) * 8
    header = packed[:header_bytes].view(torch.int32)[:count * _HEADER_WORDS].reshape(count, _HEADER_WORDS).long()
    in_h, in_w, offsets = header[:, 0], header[:, 1], header[:, 2] // 3
    pixels = packed[header_bytes:].view(-1, 3)  # (all pixels of all crops, BGR)

    y0, y1, wy = _source_coordinates(torch, in_h, height)  # (count, H)
    x0, x1, wx = _source_coordinates(torch, in_w, width)  # (count, W)
    row_start = offsets.unsqueeze(1)

    def row(y: Any) -> Any:
        """Output rows `y` blended horizontally: (count, H, W, 3) int32 in 1/2048ths of a grey level."""
        base = (row_start + y * in_w.unsqueeze(1)).unsqueeze(2)  # (count, H, 1)
        weight = wx[:, None, :, None]
        return pixels[base + x0.unsqueeze(1)].int() * (_WEIGHT_ONE - weight) \
            + pixels[base + x1.unsqueeze(1)].int() * weight

    # OpenCV's fixed-point vertical blend of uint8 (its SIMD path: drop 4 bits, blend, round to a
    # level); a float blend instead, rounded or not, left OSNet vectors at cosine 0.9995-0.9997 to the
    # host path's, this one at 0.999999.
    weight = wy[:, :, None, None]
    top = ((row(y0) >> 4) * (_WEIGHT_ONE - weight)) >> 16
    bottom = ((row(y1) >> 4) * weight) >> 16
    resized = ((top + bottom + 2) >> 2).to(torch.float32)  # (count, H, W, 3) BGR levels

    # per channel with Python scalars: no small host-to-device copies of mean/std per batch
    out = torch.empty((count, 3, height, width), dtype=dtype, device=packed.device)
    source_channels = (2, 1, 0) if spec.channel_order == "RGB" else (0, 1, 2)
    for channel, source in enumerate(source_channels):
        values = resized[..., source]
        if spec.scale != 1.0:
            values = values * float(spec.scale)
        out[:, channel] = (values - float(spec.mean[channel])) / float(spec.std[channel])
    return out
