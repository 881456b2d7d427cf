"""Shared fixtures: the real pinky40 volume (skips with a message when ../shared is absent)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

PINKY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40" / "connectomics.npy.ckl.gz"


@pytest.fixture(scope="session")
def pinky40_labels() -> np.ndarray:
    """pinky40 labels as shipped: 512^3 uint32, axes (x, y, z), 16x16x40 nm; do not modify in place."""
    if not PINKY.exists():
        pytest.skip(f"pinky40 data not found at {PINKY}: the repository must sit next to shared/data/pinky40")
    import crackle

    labels = crackle.decompress(gzip.open(PINKY, "rb").read())
    return labels
