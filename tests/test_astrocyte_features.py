"""Astrocyte block features (``steps.astrocytes.block_morphology``, computed from runs of labels)
summed over blocks against voxel-by-voxel oracles that share no code with them."""

from __future__ import annotations

import doctest

import edt
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull
from test_rag import SERIAL

from syngraph.bbox import BBox
from syngraph.steps import label_runs
from syngraph.steps.astrocytes import EDT_HALO_VX, MOMENTS, block_morphology, hull_volume_nm3

_CORNERS = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)


def _blobs(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Irregular labels (argmax of smooth random fields; some split in pieces), background,
    one-voxel labels, a one-voxel-thick sheet and a line (flat and collinear hulls)."""
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.normal(size=(9, *shape)), (0, 3, 3, 1.5))
    lab = np.argmax(fields, 0).astype(np.uint64) * 1000  # label 0 is background
    lab[lab == 2000] = 2**40 + 5  # a big id
    for k, p in enumerate(rng.integers(0, np.array(shape), size=(6, 3))):
        lab[tuple(p)] = 50 + k
    lab[5:25, 7, 2:9] = 77  # a sheet
    lab[3:30, 20, 10] = 78  # a line
    return lab


def _demo() -> np.ndarray:
    import tempfile

    from syngraph.io.volume import open_layer
    from syngraph.synth import synthesize

    with tempfile.TemporaryDirectory() as wd:
        synthesize(wd, shape_xyz=(96, 80, 48), seed=2033, compute=SERIAL)
        return open_layer(wd, "sv").read()


def _oracle(lab: np.ndarray, vs: tuple[float, float, float]) -> dict[int, dict[str, float]]:
    """Per label of the whole volume: voxels, face areas, coordinate moments, cube-hull volume."""
    ids = [int(i) for i in np.unique(lab) if i != 0]
    out: dict[int, dict[str, float]] = {i: {"area_nm2": 0.0, "contact_area_nm2": 0.0} for i in ids}
    face = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])
    for axis in range(3):
        a = np.moveaxis(lab, axis, 0)[:-1].ravel()
        b = np.moveaxis(lab, axis, 0)[1:].ravel()
        for x, y in zip(a[a != b].tolist(), b[a != b].tolist(), strict=True):
            for me, other in ((x, y), (y, x)):
                if me:
                    out[me]["area_nm2"] += face[axis]
                    out[me]["contact_area_nm2"] += face[axis] if other else 0.0
    for i in ids:
        vox = np.argwhere(lab == i)
        c = vox * np.array(vs)
        out[i]["n_vx"] = len(vox)
        pairs = ((0,), (1,), (2,), (0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
        for name, ax in zip(MOMENTS, pairs, strict=True):
            out[i][name] = float(np.prod(c[:, list(ax)], axis=1).sum())
        try:  # the cubes' hull is the hull of the corners of the cubes at the centres' hull vertices
            vox = vox[ConvexHull(vox).vertices]
        except Exception:  # noqa: BLE001  flat or tiny: every voxel
            pass
        corners = (vox[:, None, :] + _CORNERS[None]).reshape(-1, 3) * np.array(vs)
        out[i]["hull_nm3"] = ConvexHull(corners).volume
    return out


def _blockwise(lab: np.ndarray, bs: tuple[int, int, int], vs: tuple[float, float, float]):
    """Block rows summed per label, and the per-block EDT oracle (sum and max over core voxels)."""
    full = BBox.from_shape(lab.shape)
    got: dict[int, dict] = {}
    edt_ref: dict[int, list[float]] = {}
    for x0 in range(0, lab.shape[0], bs[0]):
        for y0 in range(0, lab.shape[1], bs[1]):
            for z0 in range(0, lab.shape[2], bs[2]):
                core = BBox((x0, y0, z0), tuple(min(o + b, s) for o, b, s in zip((x0, y0, z0), bs, lab.shape, strict=True)))
                read = core.grow(EDT_HALO_VX, clip=full)
                sub = lab[read.slices]
                t = block_morphology(sub, core, read, vs).to_pydict()
                for r, sv in enumerate(t["sv_id"]):
                    g = got.setdefault(sv, {"pts": [], "edt_max_nm": 0.0})
                    for k in ("n_vx", "area_nm2", "contact_area_nm2", "edt_sum_nm", *MOMENTS):
                        g[k] = g.get(k, 0) + t[k][r]
                    g["edt_max_nm"] = max(g["edt_max_nm"], t["edt_max_nm"][r])
                    g["pts"].append(np.reshape(t["hull_vx"][r], (-1, 3)))
                d = edt.edt(np.ascontiguousarray(sub), anisotropy=vs, black_border=False)[core.local_slices(read)]
                c = sub[core.local_slices(read)]
                for sv in np.unique(c[c != 0]).tolist():
                    e = edt_ref.setdefault(sv, [0.0, 0.0])
                    e[0] += float(d[c == sv].astype(np.float64).sum())
                    e[1] = max(e[1], float(d[c == sv].max()))
    return got, edt_ref


@pytest.mark.parametrize("volume", ["blobs", "demo"])
def test_block_features_match_voxel_oracles(volume):
    if volume == "blobs":
        lab, vs, shapes = _blobs(3, (40, 36, 20)), (10.0, 12.0, 30.0), [(13, 36, 7), (40, 9, 20), (16, 16, 16)]
    else:
        lab, vs, shapes = _demo(), (10.0, 10.0, 25.0), [(40, 40, 24), (96, 80, 48)]
    ref = _oracle(lab, vs)
    for order, bs in zip(("F", "C", "F"), shapes, strict=False):
        arr = np.asfortranarray(lab) if order == "F" else np.ascontiguousarray(lab)
        got, edt_ref = _blockwise(arr, bs, vs)
        assert sorted(got) == sorted(ref)
        for sv, r in ref.items():
            g = got[sv]
            assert g["n_vx"] == r["n_vx"], (sv, bs)
            for k in ("area_nm2", "contact_area_nm2", *MOMENTS):
                assert g[k] == pytest.approx(r[k], rel=1e-12, abs=1e-9), (sv, k, bs)
            assert g["edt_sum_nm"] == pytest.approx(edt_ref[sv][0], rel=1e-12)
            assert g["edt_max_nm"] == edt_ref[sv][1]
            assert hull_volume_nm3(np.concatenate(g["pts"]), vs) == pytest.approx(r["hull_nm3"], rel=1e-9), (sv, bs)


def test_slice_hull_points_keep_every_hull_vertex():
    """Random label sets: the candidates' hull is the voxels' hull, with far fewer points."""
    rng = np.random.default_rng(11)
    for _ in range(20):
        lab = (rng.random((6, 9, 12)) < rng.uniform(0.05, 0.6)).astype(np.uint8) * rng.integers(1, 4, (6, 9, 12))
        lab = lab.astype(np.uint8)
        lab_pts, pts = label_runs.slice_hull_points(label_runs.label_runs(lab))
        assert np.all(np.diff(lab_pts) >= 0)
        for sv in np.unique(lab[lab != 0]):
            vox = np.argwhere(lab == sv)
            cand = pts[lab_pts == sv]
            assert {tuple(p) for p in cand} <= {tuple(p) for p in vox}
            try:
                want = ConvexHull(vox).volume
            except Exception:  # noqa: BLE001  fewer than 4 or flat: the candidates are too
                want = 0.0
            got = ConvexHull(cand).volume if want else 0.0
            assert got == pytest.approx(want, rel=1e-12)


def test_doctests():
    from syngraph.steps import astrocytes

    for module in (label_runs, astrocytes):
        assert doctest.testmod(module).failed == 0
