"""Domain check for every learned model: how far new features lie from the training features.

A model file stores its training features' distribution as plain arrays (:meth:`Domain.arrays`,
prefix ``domain_``): per feature the quantiles at :data:`QUANTILE_LEVELS`. At prediction time
:meth:`Domain.distance` compares the new rows with it:

- per feature ``ks``: the Kolmogorov-Smirnov statistic, the largest gap between the new rows'
  empirical CDF and the training CDF (piecewise linear through the stored quantiles); 0 = same
  distribution, 1 = disjoint;
- per feature ``outside``: the fraction of new rows outside the training's central 99 %
  (quantiles 0.005-0.995; about 0.01 on data like the training data);
- overall ``distance``: the median of the per-feature ``ks``. A median needs half of the
  features to move: one feature that shifts (a different voxel size, a missing organelle map)
  does not hold a model back, a different tissue does.

``in_domain`` needs both

- ``distance <= threshold`` with ``threshold = max(DEFAULT_THRESHOLD, 3 / sqrt(n_rows))``: the
  KS statistic of ``n`` rows drawn from the training distribution itself is about
  ``0.87 / sqrt(n)`` on average and rarely above ``1.63 / sqrt(n)``, so a few rows are never
  called foreign by chance alone;
- ``max_outside <= outside_limit`` with ``outside_limit = max(OUTSIDE_LIMIT, 3 / sqrt(n_rows))``:
  no feature has most rows outside the training range. A feature that moved within the range
  the model saw (another voxel size, thinner neurites) is a shift the median tolerates; a
  feature whose values the training never had (a dense segmentation's contact fraction of 1
  against the demo's median 0.16) is where the model extrapolates, on most of the data.

See docs/models.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 201)  # every 0.5 %
DEFAULT_THRESHOLD = 0.35  # median per-feature KS above which a model's prediction is not used
OUTSIDE_LIMIT = 0.5  # fraction of rows outside a feature's training range above which it is not used
_LO, _HI = 1, 199  # indices of the 0.5 % and 99.5 % quantiles
DOMAIN_JSON = "domain.json"  # a learned step's measurement, in steps/<step>/


class DomainWarning(UserWarning):
    """The data lies outside the model's training distribution; the prediction was not used."""


@dataclass(frozen=True)
class DomainReport:
    """The measurement: overall ``distance`` vs ``threshold``, and per feature ``ks`` and ``outside``."""

    n_rows: int
    distance: float
    threshold: float
    in_domain: bool
    ks: dict[str, float]
    outside: dict[str, float]
    max_outside: float = 0.0  # the largest per-feature ``outside``
    outside_limit: float = OUTSIDE_LIMIT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def worst(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` features furthest from the training data (largest ``ks``)."""
        return sorted(self.ks.items(), key=lambda kv: -kv[1])[:k]

    def summary(self) -> str:
        worst = ", ".join(f"{n} {v:.2f}" for n, v in self.worst())
        verdict = "within" if self.in_domain else "OUTSIDE"
        out_name, out_frac = max(self.outside.items(), key=lambda kv: kv[1], default=("-", 0.0))
        return (f"domain distance {self.distance:.2f} (threshold {self.threshold:.2f}, {self.n_rows} rows), "
                f"{out_frac:.0%} of rows outside the training range of {out_name} (limit "
                f"{self.outside_limit:.0%}): {verdict} the training data; furthest features (KS): {worst}")


@dataclass(frozen=True)
class Domain:
    """Per-feature quantiles (``(len(QUANTILE_LEVELS), n_features)``) of a model's training rows."""

    names: tuple[str, ...]
    quantiles: np.ndarray
    n_train: int

    @classmethod
    def fit(cls, x: np.ndarray, names: tuple[str, ...] | list[str]) -> Domain:
        """The distribution of training rows ``x`` ``(n, len(names))`` (non-finite values ignored)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(names) or x.shape[0] == 0:
            raise ValueError(f"Domain.fit needs rows of {len(names)} features, got shape {x.shape}")
        q = np.stack([_quantiles(x[:, j]) for j in range(x.shape[1])], 1)
        return cls(tuple(names), q, int(x.shape[0]))

    def distance(self, x: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> DomainReport:
        """How far rows ``x`` (same features, same order) lie from the training rows.

        Both sides are compared at float32 precision: a feature stored as float32 on one side
        (a Parquet column) and computed in float64 on the other must not split a point mass
        (a capped value) into "all rows outside the training range"."""
        x = _float32_grid(x)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"domain check expects (n, {len(self.names)}) features, got {x.shape}")
        n = int(x.shape[0])
        q = _float32_grid(self.quantiles)
        ks = np.array([_ks(x[:, j], q[:, j]) for j in range(x.shape[1])])
        outside = np.array([
            float(np.mean((x[:, j] < q[_LO, j]) | (x[:, j] > q[_HI, j]))) if n else 0.0
            for j in range(x.shape[1])
        ])
        dist = float(np.median(ks)) if n else 0.0
        small = 3.0 / np.sqrt(max(n, 1))
        thr = max(float(threshold), small)
        out_max = float(outside.max()) if outside.size else 0.0
        out_lim = max(OUTSIDE_LIMIT, small)
        return DomainReport(
            n_rows=n, distance=round(dist, 4), threshold=round(thr, 4),
            in_domain=bool(dist <= thr and out_max <= out_lim),
            ks={k: round(float(v), 4) for k, v in zip(self.names, ks, strict=True)},
            outside={k: round(float(v), 4) for k, v in zip(self.names, outside, strict=True)},
            max_outside=round(out_max, 4), outside_limit=round(out_lim, 4),
        )

    def arrays(self, prefix: str = "domain_") -> dict[str, np.ndarray]:
        return {f"{prefix}names": np.array(self.names), f"{prefix}quantiles": self.quantiles,
                f"{prefix}levels": QUANTILE_LEVELS, f"{prefix}n_train": np.array([self.n_train])}

    @classmethod
    def from_arrays(cls, z: Any, prefix: str = "domain_") -> Domain | None:
        """The stored domain, or None for a model file saved without one."""
        if f"{prefix}quantiles" not in z:
            return None
        levels = np.asarray(z[f"{prefix}levels"])
        if levels.shape != QUANTILE_LEVELS.shape or not np.allclose(levels, QUANTILE_LEVELS):
            raise ValueError(f"stored domain quantile levels {levels.shape} differ from this syngraph's")
        return cls(tuple(str(n) for n in z[f"{prefix}names"]), np.asarray(z[f"{prefix}quantiles"], np.float64),
                   int(z[f"{prefix}n_train"][0]))

    @classmethod
    def load(cls, path: Any, prefix: str = "domain_") -> Domain | None:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays(z, prefix)


def _quantiles(v: np.ndarray) -> np.ndarray:
    v = v[np.isfinite(v)]
    return np.quantile(v, QUANTILE_LEVELS) if v.size else np.zeros(QUANTILE_LEVELS.size)


def _ks(v: np.ndarray, q: np.ndarray) -> float:
    """KS statistic between the sample ``v`` and the CDF through quantiles ``q`` (at QUANTILE_LEVELS).

    Ties in ``q`` (a feature that is often exactly 0) are point masses: the training CDF jumps there.
    """
    v = np.sort(v[np.isfinite(v)])
    if v.size == 0:
        return 0.0
    pts = np.unique(np.r_[v, q])
    # training CDF just at and just below each point
    hi = np.interp(pts, q, QUANTILE_LEVELS, left=0.0, right=1.0)
    hi = np.where(pts >= q[-1], 1.0, hi)
    right = np.searchsorted(q, pts, side="right")
    left = np.searchsorted(q, pts, side="left")
    tie = right - left > 1  # a point mass in the training data
    hi = np.where(tie, QUANTILE_LEVELS[np.maximum(right - 1, 0)], hi)
    lo = np.where(tie, QUANTILE_LEVELS[np.minimum(left, QUANTILE_LEVELS.size - 1)], hi)
    lo = np.where(pts <= q[0], 0.0, lo)
    f_hi = np.searchsorted(v, pts, side="right") / v.size
    f_lo = np.searchsorted(v, pts, side="left") / v.size
    return float(max(np.abs(f_hi - hi).max(), np.abs(f_lo - lo).max()))


def _float32_grid(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to float32 and held as float64."""
    with np.errstate(over="ignore"):
        return np.asarray(a, np.float64).astype(np.float32).astype(np.float64)


def held_back(report: DomainReport | None, trust_model: bool) -> bool:
    """Whether a step leaves its model's prediction unused: measured, outside, not overridden."""
    return report is not None and not report.in_domain and not trust_model


def domain_record(report: DomainReport | None, model: str, trust_model: bool) -> dict[str, Any]:
    """The body of a step's ``domain.json``: the model file, the override, and the measurement
    (``"measured": false`` for a model file saved without a domain)."""
    return ({"model": model, "trust_model": trust_model, "measured": report is not None,
             "held_back": held_back(report, trust_model)} | (report.to_dict() if report is not None else {}))
