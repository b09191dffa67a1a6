"""Running an image model tile by tile, with overlap and blended seams, and a smaller tile after out-of-memory.

The layout follows A1111's `images.split_grid` / `combine_grid` (evenly spaced tiles of a fixed size that overlap
by at least `overlap` pixels, seams blended by linear ramps), written for torch tensors: each tile's output is
weighted by a ramp that rises over the overlap at every inner edge, and the sum is divided by the summed weights,
so a seam is a cross-fade, never a cut. Imported only by generation code (torch).
"""
from __future__ import annotations

import math
from typing import Callable, Optional


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` px covering `length` px with at least `overlap` px shared by neighbours.

    Evenly spaced, the first at 0 and the last ending at `length`; one tile when it fits whole.
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / max(tile - overlap, 1))
    count = max(count, 2)
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def _ramp(size: int, fade_start: int, fade_end: int, device):
    """A 1-D weight: rises over `fade_start` px at the start, falls over `fade_end` px at the end, 1 between."""
    import torch

    position = torch.arange(size, dtype=torch.float32, device=device)
    weight = torch.ones(size, dtype=torch.float32, device=device)
    if fade_start > 0:
        weight = torch.minimum(weight, (position + 1) / (fade_start + 1))
    if fade_end > 0:
        weight = torch.minimum(weight, (size - position) / (fade_end + 1))
    return weight


def run_tiled(model: Callable, image, scale: int, tile: int, overlap: int):
    """`model` applied to (1, C, H, W) `image` in tiles of `tile` px; returns (1, C', H·scale, W·scale) float32 on
    the CPU. `model` must map (1, C, h, w) to (1, C', h·scale, w·scale)."""
    import torch

    _, _, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return model(image).float().cpu()
    tile = min(tile, max(height, width))
    overlap = min(overlap, tile // 2)
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out = weights = None
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            piece = image[:, :, top:top + tile, left:left + tile]
            result = model(piece).float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height * scale, width * scale)
                weights = torch.zeros(1, 1, height * scale, width * scale)
            h, w = result.shape[-2:]
            # Fade only where a neighbour overlaps: the picture's own borders keep full weight.
            fade_top = (rows[i - 1] + tile - top) * scale if i > 0 else 0
            fade_bottom = (top + tile - rows[i + 1]) * scale if i + 1 < len(rows) else 0
            fade_left = (cols[j - 1] + tile - left) * scale if j > 0 else 0
            fade_right = (left + tile - cols[j + 1]) * scale if j + 1 < len(cols) else 0
            mask = _ramp(h, fade_top, fade_bottom, "cpu")[:, None] * _ramp(w, fade_left, fade_right, "cpu")[None, :]
            y, x = top * scale, left * scale
            out[:, :, y:y + h, x:x + w] += result * mask
            weights[:, :, y:y + h, x:x + w] += mask
    return out / weights.clamp_min(1e-8)


def run_adaptive(model: Callable, image, scale: int, tile: int, overlap: int, minimum: int = 32,
                 on_smaller: Optional[Callable[[int], None]] = None):
    """`run_tiled`, halving the tile after each out-of-memory error until it fits or is below `minimum`.

    Raises the last out-of-memory error when even `minimum`-px tiles do not fit. `tile` 0 means "whole image
    first". `on_smaller(new_tile)` is told each time the tile shrinks.
    """
    from .cache import free_memory
    from .loader import is_oom

    _, _, height, width = image.shape
    current = tile
    while True:
        failed = False
        try:
            return run_tiled(model, image, scale, current, overlap)
        except Exception as err:
            if not is_oom(err):
                raise
            failed = True
            size = current if current > 0 else max(height, width)
            if size <= minimum:
                raise
        if failed:  # outside the except block, so the traceback's tensors are gone before retrying
            free_memory()
            current = max(minimum, size // 2)
            if on_smaller is not None:
                on_smaller(current)
