"""A learned step's domain measurement (``steps/<step>/domain.json``) as evaluation metrics."""

from __future__ import annotations

import json
from pathlib import Path


def domain_metrics(wd: Path, step: str) -> tuple[float, int]:
    """``(distance, held_back)``: NaN and 0 when the step did not measure (no stored domain, or not run)."""
    p = Path(wd) / "steps" / step / "domain.json"
    d = json.loads(p.read_text()) if p.exists() else {}
    dist = float(d["distance"]) if d.get("measured") else float("nan")
    held = int(bool(d.get("measured")) and not d.get("in_domain", True) and not d.get("trust_model", False))
    return dist, held
