"""Compartment codes shared by every step (uint8 in volumes, skeletons and tables).

One enum for the whole toolkit: the demo tissue's ``gt_compartments`` layer and ``gt/skeletons``
table, the compartment step's predictions and the synapse table's ``pre_compartment`` /
``post_compartment`` all use these codes (tables store the names, volumes and skeletons the codes).

=====  ==================  ==========================================  ========
code   name                what                                        SWC type
=====  ==================  ==========================================  ========
0      unknown             background or not predicted                 0
1      soma                cell body                                   1
2      shaft               dendritic shaft (smooth dendrites too)      3
3      spine_neck          thin neck of a dendritic spine              3
4      spine_head          head of a dendritic spine                   3
5      axon                axon (myelinated or not; myelin is a flag)  2
6      bouton              en-passant bouton (varicosity)              2
7      terminal_bouton     bouton at the end of an axon branch         2
8      astrocyte           astrocytic (glial) process or soma          7
=====  ==================  ==========================================  ========

SWC codes follow the NeuroMorpho standard (1 soma, 2 axon, 3 dendrite) and BICCN's 7 for glia.

>>> code("spine_head"), name(6)
(4, 'bouton')
>>> to_swc(np.array([1, 4, 6, 0], np.uint8)).tolist()
[1, 3, 2, 0]
"""

from __future__ import annotations

from typing import Final

import numpy as np

UNKNOWN: Final = 0
SOMA: Final = 1
SHAFT: Final = 2
SPINE_NECK: Final = 3
SPINE_HEAD: Final = 4
AXON: Final = 5
BOUTON: Final = 6
TERMINAL_BOUTON: Final = 7
ASTROCYTE: Final = 8

NAMES: Final[dict[int, str]] = {
    UNKNOWN: "unknown",
    SOMA: "soma",
    SHAFT: "shaft",
    SPINE_NECK: "spine_neck",
    SPINE_HEAD: "spine_head",
    AXON: "axon",
    BOUTON: "bouton",
    TERMINAL_BOUTON: "terminal_bouton",
    ASTROCYTE: "astrocyte",
}
CODES: Final[dict[str, int]] = {v: k for k, v in NAMES.items()}

DENDRITE: Final = frozenset({SHAFT, SPINE_NECK, SPINE_HEAD})
"""Codes that belong to a dendrite (the coarse 'dendrite' class)."""
AXONAL: Final = frozenset({AXON, BOUTON, TERMINAL_BOUTON})
"""Codes that belong to an axon (the coarse 'axon' class)."""

_SWC = np.array([0, 1, 3, 3, 3, 2, 2, 2, 7], np.uint8)
_AXONESS = np.array([-1, 2, 0, 0, 0, 1, 3, 4, -1], np.int64)  # SyConn: 0 dendrite, 1 axon, 2 soma, 3/4 boutons
_SPINESS = np.array([-1, 3, 2, 0, 1, -1, -1, -1, -1], np.int64)  # SyConn: 0 neck, 1 head, 2 shaft, 3 other


def code(name: str) -> int:
    """The code of a compartment name; raises ``KeyError`` listing the valid names."""
    try:
        return CODES[name]
    except KeyError:
        raise KeyError(
            f"unknown compartment {name!r}; valid names: {', '.join(CODES)}"
        ) from None


def name(code: int) -> str:
    """The name of a compartment code; raises ``KeyError`` listing the valid codes."""
    try:
        return NAMES[int(code)]
    except KeyError:
        raise KeyError(f"unknown compartment code {code!r}; valid codes: 0-{max(NAMES)}") from None


def to_swc(codes: np.ndarray) -> np.ndarray:
    """Map compartment codes to SWC type codes (0 undefined, 1 soma, 2 axon, 3 dendrite, 7 glia)."""
    codes = np.asarray(codes)
    if codes.size and int(codes.max()) >= len(_SWC):
        raise ValueError(f"compartment codes must be 0-{len(_SWC) - 1}, got max {int(codes.max())}")
    return _SWC[codes]


def to_syconn(names: object, kind: str) -> np.ndarray:
    """Compartment names (None = unknown) -> SyConn's ``axoness`` or ``spiness`` codes (-1 = none).

    >>> to_syconn(["bouton", "spine_head", None], "axoness").tolist(), to_syconn(["spine_head", "soma"], "spiness").tolist()
    ([3, 0, -1], [1, 3])
    """
    lut = {"axoness": _AXONESS, "spiness": _SPINESS}[kind]
    codes = np.array([CODES.get(n, UNKNOWN) if n is not None else UNKNOWN for n in names], np.int64)  # type: ignore[attr-defined]
    return lut[codes]

