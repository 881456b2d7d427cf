"""The block grid: deterministic block ids over a bounding box, with optional halos."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from syngraph.bbox import BBox, Vec3, as_vec3


@dataclass(frozen=True)
class Block:
    """One block of a grid.

    ``core`` is the part of the volume this block owns (blocks' cores tile the volume without
    overlap); ``read`` is ``core`` grown by the halo and clipped to the volume. ``index`` is the
    block's XYZ grid position and ``id`` its C-order rank over (x, y, z): stable for a given
    volume shape and block size.
    """

    id: int
    index: Vec3
    core: BBox
    read: BBox

    @property
    def core_in_read(self) -> tuple[slice, slice, slice]:
        """Slices of the core inside an array that covers ``read``."""
        return self.core.local_slices(self.read)


def grid_shape(volume: BBox, block_size: Iterable[int]) -> Vec3:
    bs = as_vec3(block_size, "block_size")
    return tuple(-(-s // b) for s, b in zip(volume.shape, bs, strict=True))  # type: ignore[return-value]


def block_grid(
    volume: BBox, block_size: int | Iterable[int], halo: int | Iterable[int] = 0
) -> list[Block]:
    """Split ``volume`` into blocks of ``block_size`` voxels (XYZ), each read with ``halo``.

    >>> [b.core.to_list() for b in block_grid(BBox.from_shape((5, 2, 2)), (3, 2, 2))]
    [[[0, 0, 0], [3, 2, 2]], [[3, 0, 0], [5, 2, 2]]]
    """
    bs = as_vec3(block_size, "block_size")
    if any(b <= 0 for b in bs):
        raise ValueError(f"block_size must be positive, got {list(bs)}")
    hl = as_vec3(halo, "halo")
    gs = grid_shape(volume, bs)
    blocks = []
    for bid, (i, j, k) in enumerate(itertools.product(range(gs[0]), range(gs[1]), range(gs[2]))):
        start = tuple(
            o + n * b for o, n, b in zip(volume.start, (i, j, k), bs, strict=True)
        )
        stop = tuple(min(s + b, e) for s, b, e in zip(start, bs, volume.stop, strict=True))
        core = BBox(start, stop)  # type: ignore[arg-type]
        blocks.append(Block(bid, (i, j, k), core, core.grow(hl, clip=volume)))
    return blocks


def align_block_size(block_size: Iterable[int], chunks: Iterable[int]) -> Vec3:
    """Round ``block_size`` up to a multiple of the chunk shape so writes never share a chunk."""
    return tuple(
        -(-b // c) * c for b, c in zip(as_vec3(block_size), as_vec3(chunks), strict=True)
    )  # type: ignore[return-value]
