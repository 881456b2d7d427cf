"""The organelle watershed per mask component (steps/init/segment.py: watershed_per_component)."""

import numpy as np
import scipy.ndimage as ndi

from syngraph.steps.init.segment import (
    aniso_structure,
    erode,
    label_components,
    watershed_components,
    watershed_per_component,
)

VS = (10.0, 10.0, 25.0)


def _blobs(shape, quantile, seed):
    f = ndi.gaussian_filter(np.random.default_rng(seed).random(shape, np.float32), 3)
    mask = f > np.quantile(f, quantile)
    seeds = label_components(erode(mask, aniso_structure(VS), 2), 6).astype(np.uint64) * 7
    return mask, seeds


def test_each_component_floods_as_if_alone_in_the_volume():
    mask, seeds = _blobs((120, 100, 40), 0.9, 3)
    comps = label_components(mask, 26).astype(np.uint64) * 3  # any ids
    got = watershed_per_component(comps, seeds, VS)
    n = int(comps.max()) // 3
    assert n > 20 and len(np.unique(got)) > 20
    alone = np.zeros_like(got)  # oracle: every component on its own in the whole array
    for k in range(1, n + 1):
        m = comps == 3 * k
        alone[m] = watershed_components(m, np.where(m, seeds, 0), VS)[m]
    np.testing.assert_array_equal(got, alone)
    # against one watershed of the whole mask, only equal-distance ties may differ (few voxels)
    whole = watershed_components(mask, seeds, VS)
    assert 0 < (whole == got).mean() and (whole[mask] != got[mask]).mean() < 0.01
    assert ((got != 0) <= mask).all() and (got[seeds != 0] == seeds[seeds != 0]).all()


def test_a_component_gets_the_same_labels_in_any_crop_that_holds_its_box():
    mask, seeds = _blobs((90, 90, 30), 0.93, 5)
    comps = label_components(mask, 26)
    full = watershed_per_component(comps, seeds, VS)
    crop = (slice(20, 90), slice(10, 80), slice(0, 30))
    part = watershed_per_component(comps[crop], seeds[crop], VS)
    boxes = ndi.find_objects(comps.astype(np.int32))
    inside = [k + 1 for k, b in enumerate(boxes)  # boxes with a voxel of margin inside the crop (or the border)
              if all((b[i].start > c.start or c.start == 0) and b[i].stop < c.stop for i, c in enumerate(crop[:2]))]
    assert len(inside) > 5
    m = np.isin(comps[crop], inside)
    np.testing.assert_array_equal(part[m], full[crop][m])
