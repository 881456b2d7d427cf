"""A learned step's domain measurement on disk: ``steps/<step>/domain.json`` (docs/models.md).

The measurement itself is :meth:`syngraph.models.domain.Domain.distance`; ``syngraph evaluate``
reads the file back with :func:`syngraph.evaluate.domain.domain_metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syngraph.engine.run import write_text_atomic
from syngraph.models.domain import DOMAIN_JSON, DomainReport, domain_record


def write_domain_json(step_dir: Path, report: DomainReport | None, model: str, trust_model: bool = False,
                      **extra: Any) -> Path:
    """The step's ``domain.json``: the model file, the override, the measurement and ``extra``."""
    out = Path(step_dir) / DOMAIN_JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(domain_record(report, model, trust_model) | extra, indent=1))
    return out
