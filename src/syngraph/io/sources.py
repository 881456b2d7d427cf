"""Read-only access to the volumes labs have: Zarr v2/v3 (incl. OME-Zarr), N5, Neuroglancer
precomputed, HDF5, TIFF stacks, crackle streams, ``.npy`` files and numpy arrays.

:func:`open_source` inspects the metadata once and returns a :class:`Source`: shape, dtype and
voxel size in XYZ, plus ``read(bbox) -> XYZ ndarray``. A Source holds no open file handles when
pickled, so a Dask worker reopens the file itself and reads only its block (data is read where
it is used, never sent from the client). docs/formats.md lists the axis-order and voxel-size
rules per format.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from syngraph.bbox import BBox, Vec3
from syngraph.errors import InputError

Format = Literal["zarr2", "zarr3", "n5", "precomputed", "hdf5", "tiff", "tiff_dir", "npy", "crackle", "array"]

SPATIAL = ("x", "y", "z")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
CRACKLE_SUFFIXES = (".ckl", ".ckl.gz")
_PREFIXES = {"zarr://": None, "zarr2://": "zarr2", "zarr3://": "zarr3", "n5://": "n5",
             "precomputed://": "precomputed"}
_UNIT_NM = {
    "nanometer": 1.0, "nm": 1.0, "micrometer": 1e3, "um": 1e3, "µm": 1e3, "micron": 1e3,
    "angstrom": 0.1, "picometer": 1e-3, "pm": 1e-3, "millimeter": 1e6, "mm": 1e6,
    "centimeter": 1e7, "meter": 1e9, "m": 1e9,
}
_CHANNEL_NAMES = {"c": "c", "ch": "c", "channel": "c", "channels": "c"}


class SourceError(InputError):
    """A source cannot be imported: missing, unsupported or inconsistent (the message says how to fix it)."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The source file, directory or dataset key does not exist."""


# ---------------------------------------------------------------------------------------------
# axis handling (pure)


def parse_axes(axes: str | Sequence[str], ndim: int, where: str) -> tuple[str, ...]:
    """Normalise an axis spec (``"zyx"``, ``"czyx"``, ``["z", "y", "x"]``) to a tuple of names.

    Names are lower-cased; ``channel``/``ch`` become ``c``. x, y and z must each appear once and
    the length must equal the source's number of dimensions.
    """
    names = list(axes) if isinstance(axes, str) else [str(a) for a in axes]
    names = [_CHANNEL_NAMES.get(a.lower(), a.lower()) for a in names]
    if len(names) != ndim or sorted(set(names)) != sorted(names) or not set(SPATIAL) <= set(names):
        raise SourceError(
            f"{where}: axes {''.join(names) if all(len(a) == 1 for a in names) else names} do not fit a "
            f"{ndim}-D source; give one letter per dimension with x, y and z each once "
            f"(e.g. axes='zyx' for a C-order 3-D array, 'czyx' for 4-D)"
        )
    return tuple(names)


def default_axes(shape: Sequence[int], order: Literal["zyx", "xyz"]) -> tuple[str, ...]:
    """Axis names when the source's metadata says nothing.

    3-D: ``order``. 4-D: a channel first (``czyx``) or last (``zyxc``) for C-order sources,
    ``xyzc``/``cxyz`` for XYZ ones, whichever puts a size-1 axis in the channel slot.
    """
    base = tuple(order)
    if len(shape) == 2:
        return base[1:] if order == "zyx" else base[:2]  # completed by the caller (single slice)
    if len(shape) != 4:
        return base
    first, last = (("c", *base), (*base, "c")) if order == "zyx" else ((*base, "c"), ("c", *base))
    if shape[first.index("c")] != 1 and shape[last.index("c")] == 1:
        return last
    return first


def _voxel_from_list(
    values: Sequence[float], axes: tuple[str, ...], factor: float = 1.0
) -> tuple[float, float, float] | None:
    vals = [float(v) for v in values]
    spatial_order = [a for a in axes if a in SPATIAL]
    if len(vals) == len(axes):
        named = dict(zip(axes, vals, strict=True))
    elif len(vals) == 3:
        named = dict(zip(spatial_order, vals, strict=True))
    else:
        return None
    out = tuple(named[a] * factor for a in SPATIAL)
    if any(not np.isfinite(v) or v <= 0 for v in out):
        return None
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# the Source


@dataclass(eq=False)
class Source:
    """One source volume. ``axes`` is the order of the source's own dimensions; every
    non-spatial axis has size 1 and is dropped on read. ``read`` returns XYZ arrays."""

    uri: str
    format: Format
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    voxel_size_nm: tuple[float, float, float] | None
    dataset: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    array: np.ndarray | None = field(default=None, repr=False)
    _handle: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    @property
    def shape_xyz(self) -> Vec3:
        return tuple(self.shape[self.axes.index(a)] for a in SPATIAL)  # type: ignore[return-value]

    @property
    def bbox(self) -> BBox:
        return BBox.from_shape(self.shape_xyz)

    @property
    def name(self) -> str:
        return f"{self.uri}" + (f" [dataset {self.dataset}]" if self.dataset else "")

    @property
    def plane_axis(self) -> str | None:
        """The spatial axis whose range a read decodes in whole planes (a crackle stream decodes
        the full planes of a z-range, whatever x-y box is asked), else None."""
        return self.axes[-1] if self.format == "crackle" else None

    def read(self, bbox: BBox | None = None) -> np.ndarray:
        """Read ``bbox`` (XYZ voxels; default everything) as an XYZ array in native byte order."""
        box = self.bbox if bbox is None else bbox
        if not self.bbox.contains(box):
            raise SourceError(
                f"{self.name}: box {box.to_list()} lies outside the source {self.bbox.to_list()}"
            )
        index = tuple(
            slice(box.start[SPATIAL.index(a)], box.stop[SPATIAL.index(a)]) if a in SPATIAL else 0
            for a in self.axes
        )
        data = np.asarray(self._read(index))
        kept = [a for a in self.axes if a in SPATIAL]
        data = data.transpose([kept.index(a) for a in SPATIAL])
        if not data.dtype.isnative:
            data = data.astype(data.dtype.newbyteorder("="))
        return data

    # backends ------------------------------------------------------------------------------

    def _open(self) -> Any:
        if self._handle is not None:
            return self._handle
        fmt = self.format
        if fmt == "array":
            handle: Any = self.array
        elif fmt == "npy":
            handle = np.load(self.spec["path"], mmap_mode="r", allow_pickle=False)
        elif fmt == "crackle":
            import crackle

            # the compressed stream only (MBs); a read decodes the planes of its z-range
            handle = crackle.CrackleArray(_crackle_bytes(Path(self.spec["path"])), parallel=1)
        elif fmt == "hdf5":
            import h5py

            handle = h5py.File(self.spec["path"], "r")[self.spec["key"]]
        elif fmt in ("zarr2", "zarr3", "n5", "precomputed"):
            if self.spec.get("backend") == "zarr-python":
                import zarr

                handle = zarr.open_array(self.spec["path"], mode="r")
            else:
                import tensorstore as ts

                # precomputed domains start at voxel_offset: index from 0 like every other source
                handle = ts.open(self.spec["ts"], read=True).result().translate_to[0]
        else:  # tiff, tiff_dir: opened per read
            handle = None
        self._handle = handle
        return handle

    def _read(self, index: tuple[Any, ...]) -> np.ndarray:
        handle = self._open()
        if self.format in ("zarr2", "zarr3", "n5", "precomputed") and self.spec.get("backend") != "zarr-python":
            return handle[index].read().result()
        if self.format == "tiff":
            return self._read_tiff(index)
        if self.format == "tiff_dir":
            return self._read_tiff_dir(index)
        return np.array(handle[index])

    def _read_tiff(self, index: tuple[Any, ...]) -> np.ndarray:
        import tifffile

        zs, ys, xs = index  # tiff sources are always ("z", "y", "x")
        with tifffile.TiffFile(self.spec["path"]) as tif:
            pages = tif.asarray(key=list(range(zs.start, zs.stop)), series=0, squeeze=False)
        n, ny, nx = zs.stop - zs.start, self.shape[1], self.shape[2]
        return pages.reshape(n, ny, nx)[:, ys, xs]

    def _read_tiff_dir(self, index: tuple[Any, ...]) -> np.ndarray:
        import tifffile

        zs, ys, xs = index
        out = np.empty(
            (zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start), dtype=self.spec["raw_dtype"]
        )
        for i, f in enumerate(self.spec["files"][zs]):
            page = tifffile.imread(f)
            if page.shape != tuple(self.shape[1:]):
                raise SourceError(
                    f"{self.uri}: slice {f} has shape {page.shape}, the first slice has "
                    f"{tuple(self.shape[1:])} (y, x); all slices of a stack must have one shape"
                )
            out[i] = page[ys, xs]
        return out


# ---------------------------------------------------------------------------------------------
# opening


def open_source(
    source: str | os.PathLike[str] | np.ndarray,
    dataset: str | None = None,
    axes: str | Sequence[str] | None = None,
) -> Source:
    """Inspect ``source`` and return a :class:`Source` (reads metadata only, no voxel data).

    Parameters
    ----------
    source : path, URL or numpy array
        A Zarr v2/v3 array or group (``zarr://``, ``zarr2://``, ``zarr3://`` prefixes optional),
        an N5 array or group (``n5://``), a Neuroglancer precomputed volume (``precomputed://``,
        local or ``gs://``/``https://``), an HDF5 file, a multi-page TIFF, a directory of 2-D
        TIFF slices, a ``.npy`` file, or a numpy array.
    dataset : str, optional
        Key of the array inside a container (Zarr/N5 group, HDF5 file) or the scale key of a
        precomputed volume. An OME-Zarr group without ``dataset`` gives its full-resolution array.
    axes : str, optional
        The source's axis order, one letter per dimension (``"zyx"``, ``"xyz"``, ``"czyx"``),
        overriding the metadata. Required where the source does not state its order: ``.npy``
        files, HDF5 datasets without dimension labels, Zarr arrays without dimension names.
        Numpy arrays are XYZ (the API's convention), precomputed volumes XYZ and N5 datasets
        x-fastest (their specs), TIFF stacks z = page.
    """
    if isinstance(source, np.ndarray):
        return _finish(
            Source(uri="<numpy array>", format="array", axes=(), shape=tuple(source.shape),
                   dtype=_dtype_name(source.dtype), voxel_size_nm=None, array=source),
            meta_axes=None, user_axes=axes, order="xyz",
        )
    uri = os.fspath(source)
    forced: str | None = None
    for prefix, fmt in _PREFIXES.items():
        if uri.startswith(prefix):
            uri, forced = uri[len(prefix):], fmt
            break
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    remote = re.match(r"^[a-z][a-z0-9+.-]*://", uri) is not None
    if remote:
        return _open_chunked(uri, uri, forced, dataset, axes)
    path = Path(uri).expanduser()
    if not path.exists():
        raise SourceNotFoundError(
            f"source {uri} does not exist; check the path (relative paths are taken from {Path.cwd()})"
        )
    path = path.resolve()
    if path.is_file():
        suffix = path.suffix.lower()
        try:
            if suffix == ".npy":
                return _open_npy(uri, path, axes)
            if path.name.lower().endswith(CRACKLE_SUFFIXES):
                return _open_crackle(uri, path, axes)
            if suffix in TIFF_SUFFIXES:
                return _open_tiff(uri, path, axes)
            if suffix in HDF5_SUFFIXES or _is_hdf5(path):
                return _open_hdf5(uri, path, dataset, axes)
        except SourceError:
            raise
        except Exception as exc:  # a reader's own error on a damaged or mislabelled file
            raise SourceError(
                f"source {uri}: cannot read it as a {suffix} file ({type(exc).__name__}: {exc}); "
                f"check that the file is a complete {suffix} of one numeric (uint or float) array"
            ) from exc
        raise SourceError(
            f"source {uri}: unsupported file type '{suffix}'; syngraph imports Zarr, N5, precomputed "
            f"(directories), HDF5 (.h5), TIFF (.tif), crackle (.ckl, .ckl.gz) and .npy files"
        )
    if forced is None and not any(
        (path / m).exists() for m in ("info", "zarr.json", ".zarray", ".zgroup", "attributes.json")
    ):
        tifs = _tiff_files(path)
        if tifs:
            return _open_tiff_dir(uri, path, tifs, axes)
    return _open_chunked(uri, path.as_uri(), forced, dataset, axes)


def _dtype_name(dtype: np.dtype) -> str:
    return np.dtype(dtype).newbyteorder("=").name


def _finish(
    src: Source,
    meta_axes: Sequence[str] | None,
    user_axes: str | Sequence[str] | None,
    order: Literal["zyx", "xyz"] | None,
    where_named: str = "",
) -> Source:
    """Fix the axis names (user > metadata > the format's own convention ``order``) and check the
    non-spatial axes. ``order=None``: the format has no convention, so the axes must be named
    (in the metadata, see ``where_named``, or by the user); guessing would transpose silently."""
    ndim = len(src.shape)
    if user_axes is not None:
        axes = parse_axes(user_axes, ndim, f"source {src.name}")
        if meta_axes is not None and tuple(meta_axes) != axes:
            warnings.warn(
                f"source {src.name}: axes {''.join(axes)} given, the metadata says "
                f"{''.join(meta_axes)}; using {''.join(axes)}", stacklevel=3,
            )
    elif meta_axes is not None:
        axes = parse_axes(meta_axes, ndim, f"source {src.name} (axis names in its metadata)")
    else:
        if ndim not in (3, 4):
            raise SourceError(
                f"source {src.name} has {ndim} dimensions {list(src.shape)}; syngraph imports 3-D volumes "
                f"(or 4-D with one channel): pass axes= naming each dimension, e.g. 'tczyx'"
            )
        if order is None:
            raise SourceError(missing_axes_message(src.name, src.shape, where_named))
        axes = default_axes(src.shape, order)
    for a, n in zip(axes, src.shape, strict=True):
        if a not in SPATIAL and n != 1:
            what = "channels" if a == "c" else f"entries along axis '{a}'"
            raise SourceError(
                f"source {src.name} has {n} {what} (shape {list(src.shape)}, axes {''.join(axes)}); "
                f"a syngraph layer holds one channel: import a single-channel array, or pass axes= "
                f"if the axis order is wrong"
            )
    src.axes = axes
    return src


def missing_axes_message(name: str, shape: Sequence[int], where_named: str = "") -> str:
    """The error for a source whose axis order nothing states (one line, with the fix)."""
    n = len(shape)
    example = {3: "xyz", 4: "czyx"}.get(n, "tczyx"[-n:] if n <= 5 else "")
    fix = (
        "pass --axes xyz (Python: axes='xyz') if it was saved from an XYZ array, as syngraph "
        "writes them, or --axes zyx for z, y, x (C order, as most Python tools write volumes)"
        if n == 3 else f"pass --axes naming each of its {n} dimensions, e.g. --axes {example}"
    )
    return (
        f"source {name} (shape {list(shape)}) does not say its axis order"
        f"{' (' + where_named + ')' if where_named else ''}; {fix}"
    )


def _open_npy(uri: str, path: Path, axes: Any) -> Source:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    src = Source(uri=uri, format="npy", axes=(), shape=tuple(arr.shape), dtype=_dtype_name(arr.dtype),
                 voxel_size_nm=None, spec={"path": str(path)})
    return _finish(src, None, axes, None, "a .npy file has no axis names")


def _crackle_bytes(path: Path) -> bytes:
    """The crackle stream of a ``.ckl`` file, or of a gzipped ``.ckl.gz`` one."""
    if path.name.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _open_crackle(uri: str, path: Path, axes: Any) -> Source:
    import crackle

    head = crackle.header(_crackle_bytes(path))
    dtype = np.dtype(f"{'i' if head.signed else 'u'}{head.data_width}")
    src = Source(uri=uri, format="crackle", axes=(), shape=(head.sx, head.sy, head.sz),
                 dtype=_dtype_name(dtype), voxel_size_nm=None, spec={"path": str(path)})
    return _finish(src, None, axes, "xyz")  # the header's sx, sy, sz: x, y, z as cloud-volume writes


def _is_hdf5(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(path))


def _attr_voxel_size(attrs: Any, axes: tuple[str, ...]) -> tuple[float, float, float] | None:
    for key, factor in (("resolution", 1.0), ("voxel_size", 1.0), ("element_size_um", 1e3)):
        if key in attrs:
            try:
                return _voxel_from_list(list(np.ravel(attrs[key])), axes, factor)
            except (TypeError, ValueError):
                return None
    return None


def _hdf5_axes(d: Any) -> list[str] | None:
    """Axis names an HDF5 dataset states: dimension labels (h5py ``dims``), an ``axes``
    attribute ("zyx" or a list), or ilastik's ``axistags`` JSON; None if it states none."""
    labels = [str(dim.label) for dim in d.dims]
    if labels and all(labels):
        return labels
    raw = d.attrs.get("axes")
    if raw is not None:
        if isinstance(raw, bytes):
            raw = raw.decode()
        names = list(raw) if isinstance(raw, str) else [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        return names or None
    tags = d.attrs.get("axistags")
    if tags is not None:
        try:
            keys = [a["key"] for a in json.loads(tags)["axes"]]
        except (TypeError, ValueError, KeyError):
            return None
        return keys or None
    return None


def _open_hdf5(uri: str, path: Path, dataset: str | None, axes: Any) -> Source:
    import h5py

    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        if dataset is None:
            if len(names) != 1:
                raise SourceError(
                    f"source {uri} holds {len(names)} datasets; pick one with dataset= "
                    f"(CLI: --dataset): {', '.join(names) or 'none'}"
                )
            dataset = names[0]
        key = dataset.strip("/")
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise SourceNotFoundError(
                f"source {uri} has no dataset '{dataset}'; the datasets in it are: {', '.join(names) or 'none'}"
            )
        d = f[key]
        src = Source(uri=uri, format="hdf5", axes=(), shape=tuple(d.shape), dtype=_dtype_name(d.dtype),
                     voxel_size_nm=None, dataset=key, spec={"path": str(path), "key": key})
        src = _finish(src, _hdf5_axes(d), axes, None,
                      "no dimension labels, 'axes' or 'axistags' attribute on the dataset")
        src.voxel_size_nm = _attr_voxel_size(d.attrs, src.axes)
    return src


def _open_tiff(uri: str, path: Path, axes: Any) -> Source:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        n_pages = len(series.pages) if series.pages else 1
        page = tif.pages[0]
        dtype = _dtype_name(series.dtype)
        shape_yx = tuple(page.shape)
    if len(shape_yx) != 2:
        raise SourceError(
            f"source {uri}: TIFF pages have shape {list(shape_yx)}; syngraph reads single-channel "
            f"2-D pages (z = page); save one channel per file"
        )
    if axes is not None and parse_axes(axes, 3, f"source {uri}") != ("z", "y", "x"):
        raise SourceError(f"source {uri}: TIFF stacks are always z (page), y, x; drop axes=")
    return Source(uri=uri, format="tiff", axes=("z", "y", "x"), shape=(n_pages, *shape_yx),
                  dtype=dtype, voxel_size_nm=None, spec={"path": str(path)})


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _tiff_files(path: Path) -> list[str]:
    files = [p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES]
    return [str(path / n) for n in sorted(files, key=_natural_key)]


def _open_tiff_dir(uri: str, path: Path, files: list[str], axes: Any) -> Source:
    import tifffile

    shapes: dict[tuple[int, ...], list[str]] = {}
    dtypes: dict[str, list[str]] = {}
    for f in files:
        with tifffile.TiffFile(f) as tif:
            shapes.setdefault(tuple(tif.series[0].shape), []).append(f)
            dtypes.setdefault(_dtype_name(tif.series[0].dtype), []).append(f)
    first = tuple(next(iter(shapes)))
    if len(shapes) > 1 or len(first) != 2:
        odd = [f"{Path(fs[0]).name}: {list(s)}" for s, fs in shapes.items()]
        raise SourceError(
            f"source {uri}: the TIFF slices must all be 2-D with one shape (y, x); found "
            f"{'; '.join(odd)} (first file with each shape)"
        )
    if len(dtypes) > 1:
        odd = [f"{Path(fs[0]).name}: {d}" for d, fs in dtypes.items()]
        raise SourceError(f"source {uri}: the TIFF slices have mixed dtypes ({'; '.join(odd)})")
    if axes is not None and parse_axes(axes, 3, f"source {uri}") != ("z", "y", "x"):
        raise SourceError(f"source {uri}: TIFF directories are always z (file), y, x; drop axes=")
    dtype = next(iter(dtypes))
    return Source(uri=uri, format="tiff_dir", axes=("z", "y", "x"), shape=(len(files), *first),
                  dtype=dtype, voxel_size_nm=None,
                  spec={"path": str(path), "files": np.array(files, dtype=object), "raw_dtype": dtype})


# --- chunked formats through tensorstore ---------------------------------------------------


def _join(base: str, key: str) -> str:
    key = key.strip("/")
    return base.rstrip("/") + "/" + key if key else base.rstrip("/")


def _read_json(url: str, key: str) -> dict[str, Any] | None:
    """The JSON document ``key`` under the kvstore ``url``; None if absent."""
    import tensorstore as ts

    try:
        kv = ts.KvStore.open(url.rstrip("/") + "/").result()
        res = kv.read(key).result()
    except Exception as exc:  # bad URL, no network: report as such
        raise SourceError(f"cannot read {_join(url, key)}: {exc}") from exc
    if res.state != "value":
        return None
    try:
        return json.loads(bytes(res.value))  # type: ignore[no-any-return]
    except json.JSONDecodeError as exc:
        raise SourceError(f"{_join(url, key)} is not valid JSON: {exc}") from exc


@dataclass
class _Node:
    format: Format
    kind: Literal["array", "group"]
    meta: dict[str, Any]
    attrs: dict[str, Any]


def _node(url: str, forced: str | None) -> _Node | None:
    """What lives at ``url``: a zarr v3/v2 or N5 array or group, or a precomputed volume."""
    if forced in (None, "zarr3"):
        m = _read_json(url, "zarr.json")
        if m is not None and m.get("zarr_format") == 3:
            return _Node("zarr3", m.get("node_type", "array"), m, m.get("attributes") or {})
    if forced in (None, "zarr2"):
        for key, kind in ((".zarray", "array"), (".zgroup", "group")):
            m = _read_json(url, key)
            if m is not None:
                return _Node("zarr2", kind, m, _read_json(url, ".zattrs") or {})  # type: ignore[arg-type]
    if forced in (None, "n5"):
        m = _read_json(url, "attributes.json")
        if m is not None:
            return _Node("n5", "array" if "dimensions" in m else "group", m, m)
    if forced in (None, "precomputed"):
        m = _read_json(url, "info")
        if m is not None and "scales" in m:
            return _Node("precomputed", "array", m, m)
    return None


def _list_arrays(url: str) -> list[str]:
    """Keys of the arrays under a local container (for error messages); [] for remote stores."""
    if not url.startswith("file://"):
        return []
    root = Path(url[len("file://"):])
    out = []
    for dirpath, _, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        if rel.count("/") > 6:
            continue
        if ".zarray" in files:
            out.append(rel)
        elif "zarr.json" in files:
            m = json.loads((Path(dirpath) / "zarr.json").read_text())
            if m.get("node_type") == "array":
                out.append(rel)
        elif "attributes.json" in files:
            m = json.loads((Path(dirpath) / "attributes.json").read_text())
            if "dimensions" in m:
                out.append(rel)
    return sorted(o for o in out if o != ".")


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    ms = (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _ome_voxel_and_axes(
    ms: dict[str, Any], ds: dict[str, Any]
) -> tuple[list[str] | None, tuple[float, float, float] | None]:
    axes_meta = ms.get("axes")
    if not axes_meta:
        return None, None
    names = [a if isinstance(a, str) else a.get("name", "") for a in axes_meta]
    units = [None if isinstance(a, str) else a.get("unit") for a in axes_meta]
    scale = np.ones(len(names))
    for transforms in (ds.get("coordinateTransformations") or [], ms.get("coordinateTransformations") or []):
        for t in transforms:
            if t.get("type") == "scale" and "scale" in t and len(t["scale"]) == len(names):
                scale = scale * np.asarray(t["scale"], dtype=float)
    lower = [n.lower() for n in names]
    voxel: tuple[float, float, float] | None = None
    if set(SPATIAL) <= set(lower):
        vals = []
        for a in SPATIAL:
            i = lower.index(a)
            unit = _UNIT_NM.get(str(units[i]).lower()) if units[i] else None
            vals.append(None if unit is None else float(scale[i]) * unit)
        if all(v is not None and v > 0 for v in vals):
            voxel = tuple(vals)  # type: ignore[assignment]
    return names, voxel


def _n5_voxel(attrs: dict[str, Any], axes: tuple[str, ...]) -> tuple[float, float, float] | None:
    pr = attrs.get("pixelResolution")
    if isinstance(pr, dict) and "dimensions" in pr:
        factor = _UNIT_NM.get(str(pr.get("unit", "nm")).lower())
        return None if factor is None else _voxel_from_list(pr["dimensions"], axes, factor)
    if isinstance(pr, list):
        return _voxel_from_list(pr, axes)
    if isinstance(attrs.get("resolution"), list):
        units = attrs.get("units")
        factor = 1.0
        if isinstance(units, list) and units:
            f = _UNIT_NM.get(str(units[0]).lower())
            if f is None:
                return None
            factor = f
        return _voxel_from_list(attrs["resolution"], axes, factor)
    return None


def _open_chunked(
    uri: str, base: str, forced: str | None, dataset: str | None, axes: Any
) -> Source:
    node_url = _join(base, dataset) if dataset else base
    node = _node(node_url, forced)
    if node is None:
        if dataset:
            have = _list_arrays(base)
            raise SourceNotFoundError(
                f"source {uri} has no array '{dataset}'; the arrays in it are: "
                f"{', '.join(have) or 'none found'}"
            )
        raise SourceError(
            f"source {uri} is not a Zarr, N5 or precomputed volume (no zarr.json, .zarray, "
            f"attributes.json or info) and holds no .tif slices; check the path"
        )
    if node.format == "precomputed":
        return _open_precomputed(uri, node_url, node, dataset, axes)
    ome: tuple[dict[str, Any], dict[str, Any]] | None = None
    if node.kind == "group":
        ms = _multiscales(node.attrs)
        if ms is None:
            have = _list_arrays(node_url)
            raise SourceError(
                f"source {uri}{' dataset ' + dataset if dataset else ''} is a group, not an array; "
                f"pick an array with dataset= (CLI: --dataset): {', '.join(have) or 'none found'}"
            )
        ds = ms[0]["datasets"][0]
        node_url = _join(node_url, ds["path"])
        dataset = _join(dataset or "", ds["path"]).lstrip("/")
        node = _node(node_url, node.format)
        if node is None or node.kind != "array":
            raise SourceError(f"source {uri}: OME-Zarr dataset '{ds['path']}' is missing or not an array")
        ome = (ms[0], ds)
    else:  # an array inside an OME-Zarr group?
        parent, _, leaf = node_url.rstrip("/").rpartition("/")
        pnode = _node(parent, node.format) if leaf else None
        ms = _multiscales(pnode.attrs) if pnode is not None else None
        for d in (ms[0]["datasets"] if ms else []):
            if str(d.get("path", "")).strip("/") == leaf:
                ome = (ms[0], d)  # type: ignore[index]

    m = node.meta
    if node.format == "zarr3":
        shape, dtype = tuple(m["shape"]), str(m["data_type"])
        names = m.get("dimension_names")
        meta_axes = list(names) if names and all(n for n in names) else None
        ts_spec: dict[str, Any] = {"driver": "zarr3", "kvstore": node_url.rstrip("/") + "/"}
        order: Literal["zyx", "xyz"] | None = None
        where_named = "no dimension_names in its zarr.json"
    elif node.format == "zarr2":
        shape, dtype = tuple(m["shape"]), np.dtype(m["dtype"]).name
        dims = node.attrs.get("_ARRAY_DIMENSIONS")
        meta_axes = list(dims) if isinstance(dims, list) and all(dims) else None
        ts_spec = {"driver": "zarr", "kvstore": node_url.rstrip("/") + "/"}
        order = None
        where_named = "no _ARRAY_DIMENSIONS attribute"
    else:  # n5: tensorstore keeps the attributes.json order, which is x, y, z for Java tools
        shape, dtype = tuple(m["dimensions"]), str(m["dataType"])
        names = m.get("axes")
        meta_axes = list(names) if isinstance(names, list) and names else None
        ts_spec = {"driver": "n5", "kvstore": node_url.rstrip("/") + "/"}
        order = "xyz"  # the N5 spec: dimension 0 varies fastest, x for every EM tool
        where_named = ""
    voxel = None
    if ome is not None:
        ome_axes, voxel = _ome_voxel_and_axes(*ome)
        meta_axes = ome_axes or meta_axes
    src = Source(uri=uri, format=node.format, axes=(), shape=shape, dtype=_dtype_name(np.dtype(dtype)),
                 voxel_size_nm=None, dataset=dataset, spec={"ts": ts_spec, "url": node_url})
    if node.format == "n5" and meta_axes is None and len(shape) == 4:
        meta_axes = list(reversed(default_axes(shape[::-1], "zyx")))
    src = _finish(src, meta_axes, axes, order, where_named)
    if voxel is None:
        voxel = _n5_voxel(node.attrs, src.axes) if node.format == "n5" else _attr_voxel_size(node.attrs, src.axes)
    src.voxel_size_nm = voxel
    _check_tensorstore_opens(src)
    return src


def _check_tensorstore_opens(src: Source) -> None:
    """Open once on the client so errors surface here; fall back to zarr-python for Zarr arrays
    that tensorstore cannot decode (e.g. Zarr v2 filters)."""
    import tensorstore as ts

    try:
        ts.open(src.spec["ts"], read=True).result()
    except Exception as exc:
        url = src.spec["url"]
        if src.format in ("zarr2", "zarr3") and url.startswith("file://"):
            import zarr

            try:
                zarr.open_array(url[len("file://"):], mode="r")
            except Exception:
                raise SourceError(f"source {src.name}: cannot open the array: {exc}") from exc
            src.spec["backend"] = "zarr-python"
            src.spec["path"] = url[len("file://"):]
            return
        raise SourceError(f"source {src.name}: cannot open the array: {exc}") from exc


def _open_precomputed(uri: str, url: str, node: _Node, dataset: str | None, axes: Any) -> Source:
    scales = node.meta["scales"]
    keys = [str(s["key"]) for s in scales]
    if dataset is None:
        index = 0
    elif dataset in keys:
        index = keys.index(dataset)
    else:
        raise SourceNotFoundError(
            f"source {uri} has no scale '{dataset}'; its scales are: {', '.join(keys)}"
        )
    s = scales[index]
    nc = int(node.meta.get("num_channels", 1))
    shape = (*[int(v) for v in s["size"]], nc)
    src = Source(uri=uri, format="precomputed", axes=(), shape=shape,
                 dtype=_dtype_name(np.dtype(node.meta["data_type"])),
                 voxel_size_nm=None, dataset=keys[index],
                 spec={"ts": {"driver": "neuroglancer_precomputed", "kvstore": url.rstrip("/") + "/",
                              "scale_index": index}, "url": url})
    src = _finish(src, ["x", "y", "z", "c"], axes, "xyz")
    src.voxel_size_nm = _voxel_from_list(s["resolution"], ("x", "y", "z"))
    _check_tensorstore_opens(src)
    return src
