"""The working store: one OME-Zarr 0.5 (Zarr v3) group per layer on local disk.

Axis convention
---------------
Every coordinate, shape, voxel size and bounding box in syngraph's API and tables is **XYZ**
(as in SyConn, cloud-volume and Neuroglancer's precomputed format). On disk each layer is a
Zarr v3 array stored **ZYX in C order** with ``dimension_names = ["z", "y", "x"]`` so that napari,
Neuroglancer and OME-Zarr readers open it unchanged. :class:`Layer` hands out XYZ views: a
transpose of the ZYX block, no copy.

Layout of ``<workdir>/volumes.zarr``::

    volumes.zarr/zarr.json          OME-Zarr ``labels`` group: ``ome.labels`` lists the label layers
    volumes.zarr/<layer>/zarr.json  group with OME-Zarr ``multiscales`` (axes z, y, x in nm);
                                    label and mask layers add ``image-label``
    volumes.zarr/<layer>/0/         the full-resolution array (chunked, blosc zstd)

Layer attributes (``attributes.syngraph`` in the layer group): ``voxel_size_nm`` (XYZ),
``offset_vx`` (XYZ), ``kind`` (``labels``, ``probability``, ``mask`` ...), ``value_range``
(the full scale of a probability map, e.g. 255 for uint8 or 1.0 for float).

Reads and writes go through tensorstore (2-3x faster than zarr-python on Zarr v3); metadata is
written with zarr-python. Concurrent writers are safe as long as they write disjoint chunks,
which the block engine guarantees by aligning blocks to chunks.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from syngraph.bbox import BBox, Vec3, as_vec3
from syngraph.config import absolute_path

STORE_NAME = "volumes.zarr"
ARRAY_KEY = "0"
DEFAULT_CHUNKS_XYZ: Vec3 = (128, 128, 64)
SUPPORTED_DTYPES = ("uint8", "uint16", "uint32", "uint64", "float32")


class VolumeError(ValueError):
    """A layer is missing, malformed or inconsistent with another layer."""


@dataclass(frozen=True)
class LayerInfo:
    """What a layer is: shape, dtype, chunking and physical placement (all XYZ)."""

    name: str
    shape_xyz: Vec3
    dtype: str
    chunks_xyz: Vec3
    voxel_size_nm: tuple[float, float, float]
    offset_vx: Vec3 = (0, 0, 0)
    kind: str = "labels"
    value_range: float | None = None

    @property
    def bbox(self) -> BBox:
        return BBox.from_shape(self.shape_xyz)


def store_path(workdir: str | Path) -> Path:
    """``<workdir>/volumes.zarr`` as an absolute path without ``..`` (tensorstore refuses those, and
    workers running in other directories must read the same files)."""
    return absolute_path(workdir) / STORE_NAME


def _ensure_store(root: Path) -> None:
    if not (root / "zarr.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / "zarr.json.tmp"
        tmp.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
        tmp.replace(root / "zarr.json")


LABEL_KINDS = ("labels", "mask")


def _write_root_labels(root: Path) -> None:
    """The store root is an OME-Zarr ``labels`` group listing every integer label layer (written
    atomically, recomputed from the layers on disk)."""
    names = []
    for p in sorted(root.iterdir()):
        meta = p / "zarr.json"
        if p.is_dir() and meta.exists():
            kind = json.loads(meta.read_text()).get("attributes", {}).get("syngraph", {}).get("kind")
            if kind in LABEL_KINDS:
                names.append(p.name)
    tmp = root / f"zarr.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                               "attributes": {"ome": {"version": "0.5", "labels": names}}}))
    tmp.replace(root / "zarr.json")


def _ome_attrs(info: LayerInfo) -> dict[str, Any]:
    vx, vy, vz = info.voxel_size_nm
    ox, oy, oz = info.offset_vx
    label = {"image-label": {"version": "0.5"}} if info.kind in LABEL_KINDS else {}
    return {
        "ome": {
            "version": "0.5",
            **label,
            "multiscales": [
                {
                    "name": info.name,
                    "axes": [
                        {"name": a, "type": "space", "unit": "nanometer"} for a in ("z", "y", "x")
                    ],
                    "datasets": [
                        {
                            "path": ARRAY_KEY,
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [vz, vy, vx]},
                                {"type": "translation", "translation": [oz * vz, oy * vy, ox * vx]},
                            ],
                        }
                    ],
                }
            ],
        },
        "syngraph": {
            "voxel_size_nm": list(info.voxel_size_nm),
            "offset_vx": list(info.offset_vx),
            "kind": info.kind,
            "value_range": info.value_range,
            "shape_xyz": list(info.shape_xyz),
            "chunks_xyz": list(info.chunks_xyz),
            "dtype": info.dtype,
        },
    }


def create_layer(
    workdir: str | Path,
    name: str,
    shape_xyz: Iterable[int],
    dtype: str | np.dtype,
    voxel_size_nm: Iterable[float],
    *,
    chunks_xyz: Iterable[int] | None = None,
    offset_vx: Iterable[int] = (0, 0, 0),
    kind: str = "labels",
    value_range: float | None = None,
    overwrite: bool = False,
) -> Layer:
    """Create an empty (zero-filled) layer in ``<workdir>/volumes.zarr``.

    ``chunks_xyz`` defaults to 128x128x64, clipped to the shape. A layer that already exists
    raises unless ``overwrite=True``.
    """
    dtype = np.dtype(dtype).name
    if dtype not in SUPPORTED_DTYPES:
        raise VolumeError(
            f"layer '{name}': dtype {dtype} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}"
        )
    shape = as_vec3(shape_xyz, "shape_xyz")
    if any(s <= 0 for s in shape):
        raise VolumeError(f"layer '{name}': shape {shape} must be positive in x, y and z")
    vs = tuple(float(v) for v in voxel_size_nm)
    if len(vs) != 3 or any(not np.isfinite(v) or v <= 0 for v in vs):
        raise VolumeError(
            f"layer '{name}': voxel_size_nm {list(vs)} must be 3 positive numbers (x, y, z in nm)"
        )
    chunks = as_vec3(chunks_xyz if chunks_xyz is not None else DEFAULT_CHUNKS_XYZ, "chunks_xyz")
    chunks = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))
    info = LayerInfo(
        name=name,
        shape_xyz=shape,
        dtype=dtype,
        chunks_xyz=chunks,  # type: ignore[arg-type]
        voxel_size_nm=vs,  # type: ignore[arg-type]
        offset_vx=as_vec3(offset_vx, "offset_vx"),
        kind=kind,
        value_range=value_range,
    )
    import zarr
    from zarr.codecs import BloscCodec

    root = store_path(workdir)
    _ensure_store(root)
    path = root / name
    if path.exists():
        if not overwrite:
            raise VolumeError(
                f"layer '{name}' already exists in {root}; pass overwrite=True (CLI: --overwrite) to replace it"
            )
        shutil.rmtree(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs.update(_ome_attrs(info))
    group.create_array(
        ARRAY_KEY,
        shape=shape[::-1],
        chunks=chunks[::-1],
        dtype=dtype,
        dimension_names=["z", "y", "x"],
        compressors=BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
        fill_value=0,
        attributes={"dimension_units": [f"{vs[2]:g} nm", f"{vs[1]:g} nm", f"{vs[0]:g} nm"]},
    )
    _write_root_labels(root)
    return Layer(path, info)


def open_layer(workdir: str | Path, name: str, *, partial: bool = False) -> Layer:
    """Open an existing layer; a missing one, or one whose import stopped half-way (unless
    ``partial``: for its metadata only), raises :class:`VolumeError` naming the fix."""
    path = store_path(workdir) / name
    meta = path / "zarr.json"
    if not meta.exists():
        have = list_layers(workdir)
        raise VolumeError(
            f"layer '{name}' not found in {store_path(workdir)} (have: {', '.join(have) or 'none'}); "
            f"import it with `syngraph import {name} SOURCE`"
        )
    started = Path(workdir) / "steps" / f"import_{name}"
    if not partial and started.is_dir() and not (started / "stats.json").exists():
        raise VolumeError(
            f"layer '{name}' in {store_path(workdir)} is only partly imported (the import stopped); "
            f"run the same `syngraph import {name} SOURCE` again to resume, or with --overwrite"
        )
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {}).get("syngraph", {})
        info = LayerInfo(
            name=name,
            shape_xyz=as_vec3(attrs["shape_xyz"]),
            dtype=np.dtype(attrs["dtype"]).name,
            chunks_xyz=as_vec3(attrs["chunks_xyz"]),
            voxel_size_nm=tuple(float(v) for v in attrs["voxel_size_nm"]),  # type: ignore[arg-type]
            offset_vx=as_vec3(attrs.get("offset_vx", (0, 0, 0))),
            kind=attrs.get("kind", "labels"),
            value_range=attrs.get("value_range"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VolumeError(
            f"layer '{name}': {meta} is unreadable ({type(exc).__name__}: {exc}); "
            f"re-import the layer with `syngraph import {name} SOURCE --overwrite`"
        ) from exc
    if info.dtype not in SUPPORTED_DTYPES or len(info.voxel_size_nm) != 3 or any(
            not np.isfinite(v) or v <= 0 for v in info.voxel_size_nm) or any(s <= 0 for s in info.shape_xyz):
        raise VolumeError(
            f"layer '{name}': {meta} has dtype {info.dtype}, shape {list(info.shape_xyz)}, voxel size "
            f"{list(info.voxel_size_nm)} nm; re-import the layer with `syngraph import {name} SOURCE --overwrite`"
        )
    return Layer(path, info)


def list_layers(workdir: str | Path) -> list[str]:
    root = store_path(workdir)
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if (p / ARRAY_KEY / "zarr.json").exists())


class Layer:
    """One volume layer. ``read``/``write`` take and return XYZ arrays."""

    def __init__(self, path: Path, info: LayerInfo, cache_mb: float = 0):
        self.path = Path(path)
        self.info = info
        self.cache_mb = cache_mb

    def __repr__(self) -> str:
        i = self.info
        return f"Layer({i.name!r}, shape_xyz={i.shape_xyz}, dtype={i.dtype}, voxel_size_nm={i.voxel_size_nm})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "info": self.info, "cache_mb": self.cache_mb}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.info = state["info"]
        self.cache_mb = state.get("cache_mb", 0)

    def cached(self, cache_mb: float) -> Layer:
        """The same layer, keeping up to ``cache_mb`` MB of decoded chunks between reads (for many
        small overlapping reads, e.g. one box per synapse; the default layer keeps none)."""
        return Layer(self.path, self.info, cache_mb)

    @property
    def shape(self) -> Vec3:
        return self.info.shape_xyz

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    @property
    def bbox(self) -> BBox:
        return self.info.bbox

    @cached_property
    def _ts(self) -> Any:
        import tensorstore as ts

        spec = {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(self.path / ARRAY_KEY)},
            "context": {"cache_pool": {"total_bytes_limit": int(self.cache_mb * 2**20)}},
        }
        return ts.open(spec, open=True).result()

    def read(self, bbox: BBox | None = None) -> np.ndarray:
        """Read ``bbox`` (default: everything) as an XYZ array (a transposed ZYX C-order block)."""
        box = self.bbox if bbox is None else bbox
        if not self.bbox.contains(box):
            raise VolumeError(
                f"layer '{self.info.name}': box {box.to_list()} lies outside the volume {self.bbox.to_list()}"
            )
        (x0, y0, z0), (x1, y1, z1) = box.start, box.stop
        try:
            zyx = self._ts[z0:z1, y0:y1, x0:x1].read().result()
        except ValueError as exc:  # tensorstore: a chunk that does not decode
            raise VolumeError(
                f"layer '{self.info.name}': cannot read box {box.to_list()} from {self.path}: {exc}; "
                f"the layer is damaged: re-import the layer with `syngraph import {self.info.name} "
                f"SOURCE --overwrite`"
            ) from exc
        return np.asarray(zyx).transpose(2, 1, 0)

    def write(self, data_xyz: np.ndarray, offset_vx: Iterable[int] = (0, 0, 0)) -> None:
        """Write an XYZ array with its first voxel at ``offset_vx``."""
        off = as_vec3(offset_vx, "offset_vx")
        box = BBox.from_shape(data_xyz.shape, off)
        if not self.bbox.contains(box):
            raise VolumeError(
                f"layer '{self.info.name}': write of {box.to_list()} lies outside the volume {self.bbox.to_list()}"
            )
        if data_xyz.dtype != self.dtype:
            raise VolumeError(
                f"layer '{self.info.name}': writing {data_xyz.dtype} into a {self.dtype} layer"
            )
        (x0, y0, z0), (x1, y1, z1) = box.start, box.stop
        self._ts[z0:z1, y0:y1, x0:x1].write(np.ascontiguousarray(data_xyz.transpose(2, 1, 0))).result()
