"""Axis-aligned integer bounding boxes in voxels, XYZ, stop exclusive."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Vec3 = tuple[int, int, int]


def as_vec3(value: int | Iterable[int], name: str = "value") -> Vec3:
    """Normalise an int or a 3-sequence to an XYZ int tuple."""
    if isinstance(value, int | float):
        return (int(value),) * 3  # type: ignore[return-value]
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"{name} must have 3 values (x, y, z), got {list(out)}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True, order=True)
class BBox:
    """Half-open box ``[start, stop)`` in voxels, XYZ."""

    start: Vec3
    stop: Vec3

    @classmethod
    def from_shape(cls, shape_xyz: Iterable[int], offset: Iterable[int] = (0, 0, 0)) -> BBox:
        off = as_vec3(offset, "offset")
        shp = as_vec3(shape_xyz, "shape")
        return cls(off, tuple(o + s for o, s in zip(off, shp, strict=True)))  # type: ignore[arg-type]

    @property
    def shape(self) -> Vec3:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    @property
    def size(self) -> int:
        x, y, z = self.shape
        return max(x, 0) * max(y, 0) * max(z, 0)

    @property
    def empty(self) -> bool:
        return any(s <= 0 for s in self.shape)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Slices into an XYZ array whose origin is voxel (0, 0, 0)."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    def local_slices(self, outer: BBox) -> tuple[slice, slice, slice]:
        """Slices of this box inside an array that covers ``outer``."""
        return tuple(
            slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, outer.start, strict=True)
        )  # type: ignore[return-value]

    def intersect(self, other: BBox) -> BBox:
        start = tuple(max(a, b) for a, b in zip(self.start, other.start, strict=True))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop, strict=True))
        stop = tuple(max(s, e) for s, e in zip(start, stop, strict=True))
        return BBox(start, stop)  # type: ignore[arg-type]

    def grow(self, margin: int | Iterable[int], clip: BBox | None = None) -> BBox:
        """Grow by ``margin`` voxels on each side, optionally clipped to ``clip``."""
        m = as_vec3(margin, "margin")
        box = BBox(
            tuple(a - d for a, d in zip(self.start, m, strict=True)),  # type: ignore[arg-type]
            tuple(b + d for b, d in zip(self.stop, m, strict=True)),  # type: ignore[arg-type]
        )
        return box.intersect(clip) if clip is not None else box

    def contains(self, other: BBox) -> bool:
        return all(a <= b for a, b in zip(self.start, other.start, strict=True)) and all(
            a >= b for a, b in zip(self.stop, other.stop, strict=True)
        )

    def to_list(self) -> list[list[int]]:
        return [list(self.start), list(self.stop)]
