"""What Neuroglancer needs beyond the step outputs, and the viewer state that shows it all.

Written by :func:`write_neuroglancer` (``syngraph view`` runs it) under ``export/neuroglancer/``::

    segment_properties/info   neuroglancer_segment_properties (inline): per cell a label (cell type
                              where known, else kind), kind tags, volume_um3, n_synapses_out/_in
                              and cable_length_um, so cells can be searched by property
    synapses/                 precomputed annotations (neuroglancer's AnnotationWriter): one LINE
                              per synapse, pre point -> post point in voxels, properties syn_prob,
                              area_um2, size_vx, sign (enum), direction_conf; relationships
                              pre_cell and post_cell (by-id and related-id indices)
    skeletons/                the cell skeletons again with a ``compartment`` vertex attribute,
                              only when ``tables/compartments_nodes.parquet`` exists

:func:`viewer_state` builds the JSON state: image and organelle layers from ``volumes.zarr``
(``zarr3://``), the ``cells`` segmentation (supervoxels merged into cells by equivalences; cell id
= smallest supervoxel id, Neuroglancer's representative) with cell meshes, skeletons coloured by
compartment and myelin, and segment properties, and the synapse annotation layer linked to it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syngraph.engine.run import write_text_atomic
from syngraph.io.volume import list_layers, open_layer

OUT = Path("export") / "neuroglancer"
SIGN_ENUM = {"values": [-1, 0, 1], "labels": ["symmetric", "unsigned", "asymmetric"]}
SKELETON_SHADER = """#uicontrol bool by_compartment checkbox(default=true)
void main() {
  // vertex_types: SWC codes (1 soma, 2 axon, 3 dendrite, 7 glia); myelinated axon in white
  vec3 c = vec3(0.6);
  if (vertex_types > 0.5 && vertex_types < 1.5) c = vec3(1.0, 0.85, 0.1);
  else if (vertex_types > 1.5 && vertex_types < 2.5) c = vec3(0.2, 0.6, 1.0);
  else if (vertex_types > 2.5 && vertex_types < 3.5) c = vec3(1.0, 0.3, 0.3);
  else if (vertex_types > 6.5) c = vec3(0.3, 0.9, 0.4);
  MYELIN
  if (by_compartment) emitRGB(c); else emitDefault();
}
"""
SYNAPSE_SHADER = """void main() {
  setColor(prop_sign() < 0 ? vec3(0.2, 0.5, 1.0) : vec3(1.0, 0.2, 0.6));
  setEndpointMarkerSize(3.0, 6.0);
}
"""


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(obj))


def segment_properties(cells: dict[str, np.ndarray], voxel_volume_nm3: float,
                       n_out: dict[int, int], n_in: dict[int, int],
                       cable_um: dict[int, float] | None = None,
                       celltype: list[str | None] | None = None) -> dict[str, Any]:
    """The ``neuroglancer_segment_properties`` info of the cells (``cell_id``, ``kind``, ``size_vx``)."""
    ids = [int(c) for c in cells["cell_id"]]
    kinds = [str(k) for k in cells["kind"]]
    tags = sorted(set(kinds))
    label = [t or k for t, k in zip(celltype or [None] * len(ids), kinds, strict=True)]
    props: list[dict[str, Any]] = [
        {"id": "label", "type": "label", "values": label},
        {"id": "kind", "type": "tags", "tags": tags, "values": [[tags.index(k)] for k in kinds]},
        {"id": "volume_um3", "type": "number", "data_type": "float32",
         "values": [float(s) * voxel_volume_nm3 / 1e9 for s in cells["size_vx"]]},
        {"id": "n_synapses_out", "type": "number", "data_type": "uint32", "values": [n_out.get(i, 0) for i in ids]},
        {"id": "n_synapses_in", "type": "number", "data_type": "uint32", "values": [n_in.get(i, 0) for i in ids]},
    ]
    if cable_um is not None:
        props.append({"id": "cable_length_um", "type": "number", "data_type": "float32",
                      "values": [float(cable_um.get(i, 0.0)) for i in ids]})
    return {"@type": "neuroglancer_segment_properties", "inline": {"ids": [str(i) for i in ids], "properties": props}}


def write_synapse_annotations(directory: Path, synapses: Any, voxel_size_nm: tuple[float, float, float]) -> None:
    """Synapses as precomputed LINE annotations (pre point -> post point, voxel coordinates)."""
    import neuroglancer
    from neuroglancer.write_annotations import AnnotationWriter

    space = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=list(voxel_size_nm))
    spec = neuroglancer.AnnotationPropertySpec
    writer = AnnotationWriter(space, "line", relationships=["pre_cell", "post_cell"], properties=[
        spec(id="syn_prob", type="float32"), spec(id="area_um2", type="float32"),
        spec(id="size_vx", type="uint32"), spec(id="direction_conf", type="float32"),
        spec(id="sign", type="int8", enum_values=SIGN_ENUM["values"], enum_labels=SIGN_ENUM["labels"]),
    ])
    cols = {c: synapses[c].to_numpy() for c in (
        "synapse_id", "pre_cell_id", "post_cell_id", "syn_prob", "area_um2", "size_vx", "direction_conf", "sign")}
    # +0.5: a voxel's centre (Neuroglancer voxel i spans [i, i + 1))
    pre = np.stack([synapses[f"pre_{a}_vx"].to_numpy() for a in "xyz"], 1) + 0.5
    post = np.stack([synapses[f"post_{a}_vx"].to_numpy() for a in "xyz"], 1) + 0.5
    for i in range(len(cols["synapse_id"])):
        writer.add_line(pre[i], post[i], id=int(cols["synapse_id"][i]),
                        pre_cell=int(cols["pre_cell_id"][i]), post_cell=int(cols["post_cell_id"][i]),
                        syn_prob=float(cols["syn_prob"][i]), area_um2=float(cols["area_um2"][i]),
                        size_vx=int(min(cols["size_vx"][i], 2**32 - 1)),
                        direction_conf=float(cols["direction_conf"][i]), sign=int(cols["sign"][i]))
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    writer.write(tmp)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.replace(directory)


def _counts(ids: np.ndarray) -> dict[int, int]:
    u, n = np.unique(ids, return_counts=True)
    return {int(a): int(b) for a, b in zip(u, n, strict=True)}


def write_neuroglancer(workdir: str | Path) -> Path:
    """Write ``export/neuroglancer/`` (see module) from whatever steps have run; returns it."""
    wd = Path(workdir)
    out = wd / OUT
    out.mkdir(parents=True, exist_ok=True)
    vs = open_layer(wd, "sv").info.voxel_size_nm
    tables = wd / "tables"
    syn = pq.read_table(tables / "synapses.parquet") if (tables / "synapses.parquet").exists() else None
    if (tables / "cells.parquet").exists():
        cells = pq.read_table(tables / "cells.parquet")
        cols = {c: cells[c].to_numpy(zero_copy_only=False) for c in ("cell_id", "kind", "size_vx")}
        stats = tables / "skeleton_stats.parquet"
        cable = None
        if stats.exists():
            st = pq.read_table(stats)
            cable = dict(zip(st["cell_id"].to_pylist(), st["cable_length_um"].to_pylist(), strict=True))
        ct = cells["celltype"].to_pylist() if "celltype" in cells.column_names else None
        n_out = _counts(syn["pre_cell_id"].to_numpy()) if syn is not None else {}
        n_in = _counts(syn["post_cell_id"].to_numpy()) if syn is not None else {}
        info = segment_properties(cols, float(np.prod(vs)), n_out, n_in, cable, ct)
        _atomic_json(out / "segment_properties" / "info", info)
    if syn is not None and "pre_x_vx" in syn.column_names:
        write_synapse_annotations(out / "synapses", syn, vs)
    if (tables / "compartments_nodes.parquet").exists() and (tables / "skeletons.parquet").exists():
        from syngraph.export.swc import node_compartments, read_node_labels, with_compartments
        from syngraph.skeleton_io import cell_ids, read_skeleton, write_precomputed

        skels = [read_skeleton(wd, int(c)) for c in cell_ids(wd)]
        labels = read_node_labels(wd)
        write_precomputed(out / "skeletons", [with_compartments(s, node_compartments(labels, s)) for s in skels])
    return out


# --------------------------------------------------------------------------- state


def _image_shader(rgb: tuple[float, float, float]) -> str:
    r, g, b = rgb
    return (f"void main() {{ float v = toNormalized(getDataValue()); "
            f"emitRGBA(vec4({r:.2f} * v, {g:.2f} * v, {b:.2f} * v, v)); }}")


ORGANELLE_COLOURS = {"mi": (0.2, 1.0, 0.2), "vc": (1.0, 0.9, 0.1), "sj": (1.0, 0.2, 0.2),
                     "myelin": (0.9, 0.9, 0.9), "syn_type": (0.4, 0.6, 1.0)}


def viewer_state(workdir: str | Path, base_url: str) -> dict[str, Any]:
    """The Neuroglancer JSON state for the working directory served at ``base_url``."""
    wd = Path(workdir)
    base = base_url.rstrip("/")
    sv = open_layer(wd, "sv").info
    vs = sv.voxel_size_nm
    layers: list[dict[str, Any]] = []
    for name in list_layers(wd):
        info = open_layer(wd, name).info
        if name.startswith("gt_") or name == "sv":
            continue
        src = f"zarr3://{base}/volumes.zarr/{name}/"
        if info.kind in ("labels", "mask"):
            sources: list[Any] = [src]
            mesh = wd / "meshes" / name.removesuffix("_seg")
            if name.endswith("_seg") and (mesh / "info").exists():
                sources.append(f"precomputed://{base}/meshes/{mesh.name}")
            layers.append({"type": "segmentation", "name": name, "source": sources, "visible": False})
        elif info.kind == "probability":
            layers.append({"type": "image", "name": name, "source": src, "opacity": 0.6,
                           "blend": "additive",
                           "shader": _image_shader(ORGANELLE_COLOURS.get(name, (1.0, 1.0, 1.0)))})
        else:  # EM-like images first, in grey
            layers.insert(0, {"type": "image", "name": name, "source": src})
    out = wd / OUT
    cell_sources: list[Any] = [f"zarr3://{base}/volumes.zarr/sv/"]
    if (wd / "meshes" / "cells" / "info").exists():
        cell_sources.append(f"precomputed://{base}/meshes/cells")
    skel_dir = out / "skeletons" if (out / "skeletons" / "info").exists() else wd / "skeletons"
    shader = SKELETON_SHADER.replace("MYELIN", "")
    if (skel_dir / "info").exists():
        cell_sources.append(f"precomputed://{base}/{skel_dir.relative_to(wd).as_posix()}")
        attrs = {a["id"] for a in json.loads((skel_dir / "info").read_text())["vertex_attributes"]}
        if "myelin" in attrs:
            shader = SKELETON_SHADER.replace("MYELIN", "if (myelin > 0.5) c = vec3(1.0);")
    if (out / "segment_properties" / "info").exists():
        cell_sources.append(f"precomputed://{base}/{OUT.as_posix()}/segment_properties")
    cells_layer: dict[str, Any] = {"type": "segmentation", "name": "cells", "source": cell_sources,
                                   "skeletonRendering": {"shader": shader, "mode2d": "lines_and_points"}}
    if (wd / "tables" / "sv_to_cell.parquet").exists():
        s2c = pq.read_table(wd / "tables" / "sv_to_cell.parquet")
        order = np.argsort(s2c["cell_id"].to_numpy(), kind="stable")
        svs, cid = s2c["sv_id"].to_numpy()[order], s2c["cell_id"].to_numpy()[order]
        groups = np.split(svs, np.flatnonzero(np.diff(cid)) + 1) if len(cid) else []
        cells_layer["equivalences"] = [[str(int(v)) for v in g] for g in groups if len(g) > 1]
    if (wd / "tables" / "cells.parquet").exists():
        cells = pq.read_table(wd / "tables" / "cells.parquet", columns=["cell_id", "kind"])
        keep = [str(c) for c, k in zip(cells["cell_id"].to_pylist(), cells["kind"].to_pylist(), strict=True)
                if k != "astrocyte"]
        cells_layer["segments"] = keep
    layers.append(cells_layer)
    if (out / "synapses" / "info").exists():
        layers.append({"type": "annotation", "name": "synapses",
                       "source": f"precomputed://{base}/{OUT.as_posix()}/synapses",
                       "linkedSegmentationLayer": {"pre_cell": "cells", "post_cell": "cells"},
                       "filterBySegmentation": [], "shader": SYNAPSE_SHADER})
    shape = np.asarray(sv.shape_xyz, float)
    centre = np.asarray(sv.offset_vx, float) + shape / 2
    return {
        "dimensions": {a: [v / 1e9, "m"] for a, v in zip("xyz", vs, strict=True)},
        "position": [float(c) for c in centre],
        # both scales in voxels of the first dimension: per screen pixel, and across the 3-D view
        "crossSectionScale": float(max(shape[:2]) / 400),
        "projectionScale": float(max(shape * np.asarray(vs)) / vs[0] * 2.0),
        "layers": layers,
        "selectedLayer": {"layer": "cells", "visible": False},
        "layout": "xy-3d",
    }
