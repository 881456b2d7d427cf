import json

import numpy as np
import pytest

from syngraph.bbox import BBox
from syngraph.io.volume import VolumeError, create_layer, list_layers, open_layer


def test_xyz_api_zyx_disk(tmp_path):
    a = np.arange(5 * 4 * 3, dtype=np.uint64).reshape(5, 4, 3) + np.uint64(2**40)
    lay = create_layer(tmp_path, "sv", a.shape, "uint64", (16, 16, 40), chunks_xyz=(2, 2, 2))
    lay.write(a)
    meta = json.loads((tmp_path / "volumes.zarr" / "sv" / "0" / "zarr.json").read_text())
    assert meta["shape"] == [3, 4, 5] and meta["dimension_names"] == ["z", "y", "x"]
    back = open_layer(tmp_path, "sv")
    np.testing.assert_array_equal(back.read(), a)
    np.testing.assert_array_equal(back.read(BBox((1, 2, 0), (4, 4, 2))), a[1:4, 2:4, 0:2])
    assert back.info.voxel_size_nm == (16.0, 16.0, 40.0)
    ome = json.loads((tmp_path / "volumes.zarr" / "sv" / "zarr.json").read_text())["attributes"]["ome"]
    ds = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert ds["scale"] == [40.0, 16.0, 16.0]
    assert list_layers(tmp_path) == ["sv"]


def test_partial_write_at_offset(tmp_path):
    lay = create_layer(tmp_path, "m", (10, 10, 10), "uint8", (1, 1, 1), chunks_xyz=(4, 4, 4))
    lay.write(np.full((3, 2, 1), 7, np.uint8), (5, 6, 7))
    out = lay.read()
    assert out.sum() == 7 * 6 and (out[5:8, 6:8, 7] == 7).all()


def test_errors_name_the_layer_and_fix(tmp_path):
    create_layer(tmp_path, "sv", (4, 4, 4), "uint64", (1, 1, 1))
    with pytest.raises(VolumeError, match="layer 'sv' already exists.*overwrite"):
        create_layer(tmp_path, "sv", (4, 4, 4), "uint64", (1, 1, 1))
    with pytest.raises(VolumeError, match="layer 'mi' not found.*have: sv.*syngraph import mi"):
        open_layer(tmp_path, "mi")
    with pytest.raises(VolumeError, match="int64 is not supported"):
        create_layer(tmp_path, "x", (4, 4, 4), "int64", (1, 1, 1))
    with pytest.raises(VolumeError, match="voxel_size_nm"):
        create_layer(tmp_path, "y", (4, 4, 4), "uint8", (1, 0, 1))
    lay = open_layer(tmp_path, "sv")
    with pytest.raises(VolumeError, match="outside the volume"):
        lay.read(BBox((0, 0, 0), (5, 4, 4)))
    with pytest.raises(VolumeError, match="writing uint32 into a uint64 layer"):
        lay.write(np.zeros((2, 2, 2), np.uint32))
