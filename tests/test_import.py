"""syngraph.io.importers: every source format round-trips bit-exactly in XYZ, and bad inputs fail
before copying with messages that name the file, the layer and the fix."""

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr

from syngraph.config import default_config, write_config
from syngraph.engine import Compute
from syngraph.engine.records import read_runs
from syngraph.io.importers import import_layer, stored_dtype
from syngraph.io.sources import SourceError, SourceNotFoundError, open_source
from syngraph.io.volume import create_layer, open_layer

SHAPE = (70, 50, 30)  # XYZ, odd sizes so blocks and chunks are partial
VOXEL = (16.0, 16.0, 40.0)
SERIAL = Compute(scheduler="serial")
SMALL = {"block_size_vx": (32, 32, 16), "chunks_xyz": (16, 16, 8), "compute": SERIAL, "progress": False}


def coords_volume() -> np.ndarray:
    """XYZ uint64 volume whose value encodes its coordinate, above 2**32 (the oracle)."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.uint64) for n in SHAPE), indexing="ij")
    return (np.uint64(2**33) + x + np.uint64(100) * y + np.uint64(10_000) * z).astype(np.uint64)


VOL = coords_volume()
ZYX = np.ascontiguousarray(VOL.transpose(2, 1, 0))


def check_roundtrip(wd: Path, source, expect=VOL, **kw) -> None:
    opts = {**SMALL, "voxel_size_nm": VOXEL, **kw}
    layer = import_layer(wd, "sv", source, **opts)
    got = layer.read()
    assert layer.info.shape_xyz == SHAPE
    assert got.dtype == expect.dtype
    np.testing.assert_array_equal(got, expect)
    assert int(got[69, 0, 0]) == 2**33 + 69 and int(got[0, 49, 29]) == 2**33 + 4900 + 290_000


# --- round trips ---------------------------------------------------------------------------


def test_numpy_array_is_xyz_by_default_and_zyx_on_request(tmp_path):
    check_roundtrip(tmp_path, VOL)
    check_roundtrip(tmp_path, ZYX, axes="zyx", overwrite=True)


def test_npy_needs_axes_and_reads_back_either_order(tmp_path):
    """A .npy states no axis order: without axes it is an error naming the file and the fix
    (CUBE: a cube-shaped volume, where a wrong guess would pass every shape check)."""
    cube = VOL[:30, :30, :30]
    np.save(tmp_path / "xyz.npy", cube)
    with pytest.raises(SourceError, match=r"xyz.npy \(shape \[30, 30, 30\]\) does not say its axis order .*--axes xyz"):
        import_layer(tmp_path / "wd", "sv", tmp_path / "xyz.npy", voxel_size_nm=VOXEL, **SMALL)
    assert not (tmp_path / "wd" / "volumes.zarr").exists()
    np.save(tmp_path / "seg.npy", VOL)
    check_roundtrip(tmp_path / "wd", tmp_path / "seg.npy", axes="xyz")
    np.save(tmp_path / "zyx.npy", ZYX)
    check_roundtrip(tmp_path / "wd", tmp_path / "zyx.npy", axes="zyx", overwrite=True)


def test_zarr_v2_axes_from_array_dimensions_or_the_user(tmp_path):
    arr = zarr.create_array(tmp_path / "seg.zarr", shape=ZYX.shape, chunks=(7, 9, 11),
                            dtype="uint64", zarr_format=2)
    arr[:] = ZYX
    with pytest.raises(SourceError, match=r"seg.zarr .*does not say its axis order \(no _ARRAY_DIMENSIONS"):
        open_source(tmp_path / "seg.zarr")
    check_roundtrip(tmp_path / "wd", str(tmp_path / "seg.zarr"), axes="zyx")
    arr.attrs["_ARRAY_DIMENSIONS"] = ["z", "y", "x"]
    check_roundtrip(tmp_path / "wd", str(tmp_path / "seg.zarr"), overwrite=True)


def test_zarr_v3_dimension_names_decide_the_axis_order(tmp_path):
    arr = zarr.create_array(tmp_path / "seg.zarr", shape=SHAPE, chunks=(11, 9, 7), dtype="uint64",
                            zarr_format=3, dimension_names=["x", "y", "z"])
    arr[:] = VOL  # stored XYZ, says so
    src = open_source(tmp_path / "seg.zarr")
    assert src.axes == ("x", "y", "z") and src.shape_xyz == SHAPE
    check_roundtrip(tmp_path / "wd", tmp_path / "seg.zarr")
    zarr.create_array(tmp_path / "plain.zarr", shape=SHAPE, chunks=(11, 9, 7), dtype="uint64",
                      zarr_format=3)[:] = VOL
    with pytest.raises(SourceError, match=r"plain.zarr .*does not say its axis order \(no dimension_names"):
        open_source(tmp_path / "plain.zarr")
    check_roundtrip(tmp_path / "wd", tmp_path / "plain.zarr", axes="xyz", overwrite=True)


def test_ome_zarr_group_gives_full_resolution_and_voxel_size(tmp_path):
    g = zarr.open_group(tmp_path / "img.ome.zarr", mode="w", zarr_format=3)
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}] + [
            {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 0.04, 0.016, 0.016]}]}],
    }]}
    arr = g.create_array("s0", shape=(1, *ZYX.shape), chunks=(1, 8, 16, 16), dtype="uint64")
    arr[:] = ZYX[None]
    src = open_source(tmp_path / "img.ome.zarr")
    assert src.axes == ("c", "z", "y", "x") and src.dataset == "s0"
    np.testing.assert_allclose(src.voxel_size_nm, VOXEL)
    layer = import_layer(tmp_path / "wd", "sv", tmp_path / "img.ome.zarr", **SMALL)
    np.testing.assert_allclose(layer.info.voxel_size_nm, VOXEL)
    np.testing.assert_array_equal(layer.read(), VOL)
    # the array path inside the group finds the group's metadata too
    assert open_source(tmp_path / "img.ome.zarr" / "s0").voxel_size_nm == pytest.approx(VOXEL)


def test_n5_written_xyz_by_java_tools_with_resolution(tmp_path):
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "c.n5/seg")},
                     "metadata": {"dimensions": list(SHAPE), "blockSize": [16, 16, 8],
                                  "dataType": "uint64", "compression": {"type": "gzip"}},
                     "create": True}).result()
    store[...] = VOL
    attrs = tmp_path / "c.n5/seg/attributes.json"
    meta = json.loads(attrs.read_text())
    attrs.write_text(json.dumps({**meta, "resolution": list(VOXEL)}))
    (tmp_path / "c.n5/attributes.json").write_text('{"n5": "2.0.0"}')
    src = open_source(tmp_path / "c.n5", dataset="seg")
    assert src.shape_xyz == SHAPE and src.voxel_size_nm == VOXEL
    check_roundtrip(tmp_path / "wd", f"n5://{tmp_path / 'c.n5'}", dataset="seg", voxel_size_nm=None)


def test_precomputed_with_voxel_offset(tmp_path):
    store = ts.open({
        "driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(tmp_path / "pc")},
        "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
        "scale_metadata": {"size": list(SHAPE), "resolution": list(VOXEL), "chunk_size": [16, 16, 8],
                           "encoding": "raw", "voxel_offset": [5, 6, 7]},
        "create": True}).result()
    store[...] = VOL[..., None]
    src = open_source(f"precomputed://{tmp_path / 'pc'}")
    assert src.voxel_size_nm == VOXEL and src.shape_xyz == SHAPE
    check_roundtrip(tmp_path / "wd", str(tmp_path / "pc"), voxel_size_nm=None)


def test_hdf5_with_resolution_attribute_in_zyx(tmp_path):
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f.create_dataset("volumes/labels/neuron_ids", data=ZYX, chunks=(8, 16, 16))
        f["volumes/labels/neuron_ids"].attrs["resolution"] = [40.0, 16.0, 16.0]
        f.create_dataset("volumes/raw", data=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(SourceError, match=r"neuron_ids\] \(shape \[30, 50, 70\]\) does not say its axis order .*--axes zyx"):
        open_source(tmp_path / "seg.h5", dataset="volumes/labels/neuron_ids")
    src = open_source(tmp_path / "seg.h5", dataset="volumes/labels/neuron_ids", axes="zyx")
    assert src.voxel_size_nm == VOXEL
    pickle.loads(pickle.dumps(src)).read()  # no open h5py handle travels with it
    check_roundtrip(tmp_path / "wd", tmp_path / "seg.h5", dataset="volumes/labels/neuron_ids",
                    voxel_size_nm=None, axes="zyx")


def test_hdf5_axes_from_dimension_labels_axes_attribute_or_axistags(tmp_path):
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f.create_dataset("labelled", data=ZYX)
        for dim, name in zip(f["labelled"].dims, "zyx", strict=True):
            dim.label = name
        f.create_dataset("attr", data=VOL).attrs["axes"] = "xyz"
        f.create_dataset("ilastik", data=ZYX[..., None]).attrs["axistags"] = json.dumps(
            {"axes": [{"key": k} for k in "zyxc"]})
    for i, key in enumerate(("labelled", "attr", "ilastik")):
        check_roundtrip(tmp_path / f"wd{i}", tmp_path / "seg.h5", dataset=key)


def test_tiff_multipage_and_directory_sorted_naturally(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", ZYX)
    check_roundtrip(tmp_path / "wd", tmp_path / "stack.tif")
    (tmp_path / "slices").mkdir()
    for z in range(SHAPE[2]):  # s1.tif ... s30.tif: plain sorting would put s10 before s2
        tifffile.imwrite(tmp_path / "slices" / f"s{z + 1}.tif", ZYX[z])
    check_roundtrip(tmp_path / "wd", tmp_path / "slices", overwrite=True)


def test_crackle_streams_in_whole_plane_slabs_xyz_or_zyx(tmp_path):
    """A crackle stream (header sx, sy, sz: XYZ) is copied in full-plane slabs one chunk deep,
    each decoding only its z-range; gzipped and ZYX-ordered streams read back the same array."""
    import gzip

    import crackle

    (tmp_path / "seg.ckl").write_bytes(crackle.compress(np.asfortranarray(VOL)))
    with gzip.open(tmp_path / "zyx.ckl.gz", "wb") as f:
        f.write(crackle.compress(ZYX))
    src = open_source(tmp_path / "seg.ckl")
    assert (src.format, src.axes, src.shape_xyz, src.dtype) == ("crackle", ("x", "y", "z"), SHAPE, "uint64")
    np.testing.assert_array_equal(src.read(), VOL)
    check_roundtrip(tmp_path / "a", tmp_path / "seg.ckl", block_size_vx=None)
    manifest = json.loads((tmp_path / "a" / "steps" / "import_sv" / "manifest.json").read_text())
    assert manifest["params"]["block_size_vx"] == [80, 64, 8] and manifest["n_tasks"] == 4  # rounded to chunks
    check_roundtrip(tmp_path / "b", tmp_path / "zyx.ckl.gz", axes="zyx", block_size_vx=None)
    manifest = json.loads((tmp_path / "b" / "steps" / "import_sv" / "manifest.json").read_text())
    assert manifest["params"]["block_size_vx"] == [16, 64, 32]  # the stream's planes are x planes
    check_roundtrip(tmp_path / "c", tmp_path / "seg.ckl", block_size_vx=None, compute=Compute(workers=2))


def test_probability_float64_stored_float32_and_mask_bool(tmp_path):
    prob = np.random.default_rng(0).random(SHAPE)
    layer = import_layer(tmp_path, "mi", prob, kind="probability", voxel_size_nm=VOXEL, **SMALL)
    assert layer.info.dtype == "float32" and layer.info.value_range == 1.0
    np.testing.assert_array_equal(layer.read(), prob.astype(np.float32))
    mask = prob > 0.5
    layer = import_layer(tmp_path, "m", mask, kind="mask", **SMALL)  # voxel size of layer mi
    np.testing.assert_array_equal(layer.read(), mask.astype(np.uint8))
    assert layer.info.voxel_size_nm == VOXEL


def test_signed_labels_cast_to_uint64_with_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"signed dtype int64; storing as uint64"):
        layer = import_layer(tmp_path, "sv", VOL.astype(np.int64), voxel_size_nm=VOXEL, **SMALL)
    assert layer.info.dtype == "uint64"
    np.testing.assert_array_equal(layer.read(), VOL)


def test_two_workers_equal_serial(tmp_path):
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f.create_dataset("seg", data=ZYX).attrs["axes"] = "zyx"
    a = import_layer(tmp_path / "a", "sv", tmp_path / "seg.h5", voxel_size_nm=VOXEL, **SMALL)
    b = import_layer(tmp_path / "b", "sv", tmp_path / "seg.h5", voxel_size_nm=VOXEL,
                     **{**SMALL, "compute": Compute(workers=2)})
    np.testing.assert_array_equal(a.read(), b.read())
    np.testing.assert_array_equal(b.read(), VOL)


# --- errors --------------------------------------------------------------------------------


def test_stored_dtype_rules():
    assert stored_dtype("labels", "uint32", "sv", "s") == ("uint32", False, False)
    assert stored_dtype("probability", "uint8", "mi", "s") == ("uint8", False, False)
    for kind, dtype, msg in [
        ("labels", "float32", "labels must be unsigned integers"),
        ("probability", "uint16", "probability maps must be uint8"),
        ("probability", "float16", "probability maps must be uint8"),
        ("mask", "uint64", "masks must be bool or uint8"),
    ]:
        with pytest.raises(SourceError, match=rf"layer 'L': src has dtype {dtype}; {msg}"):
            stored_dtype(kind, dtype, "L", "src")


def test_float_labels_rejected_before_anything_is_written(tmp_path):
    np.save(tmp_path / "seg.npy", ZYX.astype(np.float32))
    with pytest.raises(SourceError, match=r"layer 'sv': .*seg.npy has dtype float32; labels must be unsigned"):
        import_layer(tmp_path / "wd", "sv", tmp_path / "seg.npy", voxel_size_nm=VOXEL, axes="zyx", **SMALL)
    assert not (tmp_path / "wd" / "volumes.zarr").exists()


def test_negative_labels_and_nan_are_errors_naming_the_layer(tmp_path):
    bad = VOL.astype(np.int64)
    bad[40, 10, 20] = -3
    with pytest.warns(UserWarning), pytest.raises(SourceError, match=r"layer 'sv': .* negative label -3"):
        import_layer(tmp_path, "sv", bad, voxel_size_nm=VOXEL, **SMALL)
    prob = np.zeros(SHAPE, np.float32)
    prob[69, 49, 29] = np.nan
    with pytest.raises(SourceError, match=r"layer 'mi': .* has non-finite values \(nan"):
        import_layer(tmp_path, "mi", prob, kind="probability", voxel_size_nm=VOXEL, **SMALL)


def test_missing_file_dataset_and_voxel_size(tmp_path):
    with pytest.raises(SourceNotFoundError, match=r"source .*nope.h5 does not exist"):
        import_layer(tmp_path, "sv", tmp_path / "nope.h5", voxel_size_nm=VOXEL, **SMALL)
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f.create_dataset("a/seg", data=ZYX)
        f.create_dataset("raw", data=ZYX)
    with pytest.raises(SourceNotFoundError, match=r"has no dataset 'seg'; the datasets in it are: a/seg, raw"):
        import_layer(tmp_path, "sv", tmp_path / "seg.h5", dataset="seg", voxel_size_nm=VOXEL, **SMALL)
    with pytest.raises(SourceError, match=r"holds 2 datasets; pick one with dataset= .*: a/seg, raw"):
        open_source(tmp_path / "seg.h5")
    g = zarr.open_group(tmp_path / "c.zarr", mode="w", zarr_format=3)
    g.create_array("labels/sv", shape=(2, 2, 2), dtype="uint8")
    with pytest.raises(SourceNotFoundError, match=r"has no array 'sv'; the arrays in it are: labels/sv"):
        open_source(tmp_path / "c.zarr", dataset="sv")
    with pytest.raises(SourceError, match=r"is a group, not an array; pick an array with dataset= .*labels/sv"):
        open_source(tmp_path / "c.zarr")
    with pytest.raises(SourceError, match=r"layer 'sv': .*does not say its voxel size .*--voxel-size-nm"):
        import_layer(tmp_path / "wd", "sv", VOL, **SMALL)


def test_voxel_size_mismatches(tmp_path):
    write_config(tmp_path, default_config((10.0, 10.0, 25.0)))
    with pytest.raises(SourceError, match=r"layer 'sv': .* voxel size \[16.0, 16.0, 40.0\] nm but .*syngraph.toml says"):
        import_layer(tmp_path, "sv", VOL, voxel_size_nm=VOXEL, **SMALL)
    layer = import_layer(tmp_path, "sv", VOL, **SMALL)  # from the config
    assert layer.info.voxel_size_nm == (10.0, 10.0, 25.0)
    other = tmp_path / "other"
    create_layer(other, "sv", SHAPE, "uint64", (8, 8, 40))
    with pytest.raises(SourceError, match=r"layer 'mi': .* but layer 'sv' has \[8.0, 8.0, 40.0\]"):
        import_layer(other, "mi", VOL, voxel_size_nm=VOXEL, **SMALL)
    store = ts.open({
        "driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(tmp_path / "pc")},
        "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
        "scale_metadata": {"size": [4, 4, 4], "resolution": [4, 4, 40], "encoding": "raw"},
        "create": True}).result()
    del store
    with pytest.raises(SourceError, match=r"voxel_size_nm \[16.0, 16.0, 40.0\] was given but .* says \[4.0, 4.0, 40.0\]"):
        import_layer(tmp_path / "wd2", "sv", tmp_path / "pc", voxel_size_nm=VOXEL, **SMALL)


def test_shape_mismatch_and_existing_layer(tmp_path):
    import_layer(tmp_path, "sv", VOL, voxel_size_nm=VOXEL, **SMALL)
    with pytest.raises(SourceError, match=r"layer 'mi': .* shape \[50, 70, 30\] .* layer 'sv' .* has \[70, 50, 30\]"):
        import_layer(tmp_path, "mi", VOL.transpose(1, 0, 2), voxel_size_nm=VOXEL, **SMALL)
    with pytest.raises(SourceError, match=r"layer 'sv' already exists .*overwrite=True"):
        import_layer(tmp_path, "sv", VOL, voxel_size_nm=VOXEL, **SMALL)


def test_multichannel_source_is_an_error(tmp_path):
    with h5py.File(tmp_path / "rgb.h5", "w") as f:
        f.create_dataset("img", data=np.zeros((3, 4, 5, 6), np.uint8))
    with pytest.raises(SourceError, match=r"rgb.h5 \[dataset img\] has 3 channels \(shape \[3, 4, 5, 6\], axes czyx\)"):
        import_layer(tmp_path, "mi", tmp_path / "rgb.h5", kind="probability", voxel_size_nm=VOXEL,
                     axes="czyx", **SMALL)
    with pytest.raises(SourceError, match=r"rgb.h5 \[dataset img\] .*does not say its axis order.* --axes czyx"):
        open_source(tmp_path / "rgb.h5")
    one = open_source(np.zeros((1, 4, 5, 6), np.uint8), axes="czyx")  # a size-1 channel is dropped
    assert one.shape_xyz == (6, 5, 4)
    assert open_source(np.zeros((4, 5, 6, 1), np.uint8)).shape_xyz == (4, 5, 6)
    with pytest.raises(SourceError, match=r"axes zy do not fit a 3-D source"):
        open_source(VOL, axes="zy")


# --- resume --------------------------------------------------------------------------------


def test_resumed_import_after_failure_equals_clean_import(tmp_path):
    prob = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    np.save(tmp_path / "clean.npy", prob.transpose(2, 1, 0))
    broken = prob.copy()
    broken[60, 40, 25] = np.nan  # only the last block fails
    np.save(tmp_path / "mi.npy", broken.transpose(2, 1, 0))
    wd = tmp_path / "wd"
    opts = {**SMALL, "kind": "probability", "voxel_size_nm": VOXEL, "axes": "zyx"}
    with pytest.raises(SourceError, match=r"has non-finite values .*layer is partly written"):
        import_layer(wd, "mi", tmp_path / "mi.npy", **opts)
    done = sorted((wd / "steps" / "import_mi" / "tasks").glob("*.done"))
    assert len(done) == 3 * 2 * 2 - 1
    np.save(tmp_path / "mi.npy", prob.transpose(2, 1, 0))  # the lab fixes the file
    resumed = import_layer(wd, "mi", tmp_path / "mi.npy", **opts)
    stats = json.loads((wd / "steps" / "import_mi" / "stats.json").read_text())
    assert (stats["n_done"], stats["n_skipped"]) == (1, 11)
    runs = read_runs(wd / "steps" / "import_mi")  # each attempt recorded, as the steps do
    assert [(r["kind"], r["status"]) for r in runs] == [("full", "failed"), ("resume", "ok")]
    assert all(r["seconds"] > 0 and r["cpu_s"] >= 0 and r["peak_rss_mb"] > 50 for r in runs)
    clean = import_layer(tmp_path / "clean", "mi", tmp_path / "clean.npy", **opts)
    np.testing.assert_array_equal(resumed.read(), clean.read())
    np.testing.assert_array_equal(resumed.read(), prob)
    # chunk files are identical byte for byte
    for f in sorted((clean.path / "0").rglob("c/*/*/*")):
        assert f.read_bytes() == (resumed.path / "0" / f.relative_to(clean.path / "0")).read_bytes()
    # a finished import is not redone silently
    with pytest.raises(SourceError, match="already exists"):
        import_layer(wd, "mi", tmp_path / "mi.npy", **opts)
    assert open_layer(wd, "mi").info.value_range == 1.0
