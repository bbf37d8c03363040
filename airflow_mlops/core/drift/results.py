"""What a drift check found: :class:`ColumnDrift` per column, :class:`DriftResult`, and the shared constants."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_DRIFT_SHARE = 0.5
DEFAULT_SAMPLE_SIZE = 50_000
MIN_SAMPLE_SIZE = 5_000
DEFAULT_SEED = 20_251_122
# Evidently switches from p-value tests to distance tests above this many reference rows.
EVIDENTLY_LARGE_REFERENCE = 1000
NUMERICAL = "numerical"
CATEGORICAL = "categorical"
HTML_NAME = "drift.html"
JSON_NAME = "drift.json"
RESULT_NAME = "result.json"


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column: the test Evidently ran, its score and threshold, and the verdict."""

    column: str
    kind: str  # "numerical" | "categorical"
    method: str
    score: float
    threshold: float
    drifted: bool
    unseen_categories: tuple[str, ...] = ()  # current values absent from the reference (first few)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unseen_categories"] = list(self.unseen_categories)
        return data


@dataclass(frozen=True)
class DriftResult:
    """What a drift check found; :meth:`summary` is the small XCom-sized view."""

    reference_uri: str
    current_uri: str
    columns: tuple[ColumnDrift, ...]
    drift_share: float
    share_threshold: float
    drift_detected: bool
    reference_rows: int
    current_rows: int
    reference_sample_rows: int
    current_sample_rows: int
    sample_size: int
    seed: int
    report_uri: str
    html_uri: str
    json_uri: str
    result_uri: str
    elapsed_s: float
    prediction: ColumnDrift | None = None
    reference_fingerprint: str | None = None
    current_fingerprint: str | None = None
    skipped_columns: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def sampled(self) -> bool:
        return (
            self.reference_sample_rows < self.reference_rows or self.current_sample_rows < self.current_rows
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.to_summary(),
            "columns": [c.to_dict() for c in self.columns],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "skipped_columns": list(self.skipped_columns),
            "sample_size": self.sample_size,
            "seed": self.seed,
            "result_uri": self.result_uri,
            "timings": dict(self.timings),
        }

    def to_summary(self) -> dict[str, Any]:
        """A compact JSON-safe dict (the operator's XCom value builds on it)."""
        return {
            "drift_detected": self.drift_detected,
            "drift_share": round(float(self.drift_share), 6),
            "share_threshold": self.share_threshold,
            "drifted_columns": self.drifted_columns,
            "n_columns": len(self.columns),
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
            "reference_uri": self.reference_uri,
            "current_uri": self.current_uri,
            "reference_fingerprint": self.reference_fingerprint,
            "current_fingerprint": self.current_fingerprint,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled": self.sampled,
            "report_uri": self.html_uri,
            "report_json_uri": self.json_uri,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    summary = to_summary  # the name before 0.2: kept for callers' code
