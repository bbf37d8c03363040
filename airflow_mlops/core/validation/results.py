"""What a validation found: :class:`ExpectationOutcome` per expectation and the :class:`ValidationResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlops.core.validation.suites import ExpectationSpec
from airflow_mlops.core.validation.values import short_value

DEFAULT_EXAMPLES = 5


@dataclass(frozen=True)
class ExpectationOutcome:
    """The outcome of one expectation, JSON-safe, in suite order."""

    index: int
    type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    description: str
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    element_count: int | None = None
    missing_count: int | None = None
    observed_value: Any = None
    examples: list[Any] = field(default_factory=list)
    exception: str | None = None

    def label(self) -> str:
        return ExpectationSpec(self.type, self.kwargs).label()

    def brief(self) -> str:
        """One line for logs and summaries."""
        text = self.label()
        if self.exception:
            return f"{text}: error {self.exception[:120]}"
        if self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.3g}%)" if self.unexpected_percent is not None else ""
            return f"{text}: {self.unexpected_count} unexpected{pct}"
        if self.observed_value is not None:
            return f"{text}: observed {short_value(self.observed_value)}"
        return text


@dataclass(frozen=True)
class ValidationResult:
    """What a validation found, and where its reports are."""

    success: bool
    dataset_uri: str
    dataset_format: str
    suite_name: str
    suite_source: str
    rows: int
    fingerprint: str
    evaluated: int
    successful: int
    outcomes: tuple[ExpectationOutcome, ...]
    columns_read: tuple[str, ...]
    elapsed_s: float
    validated_at: str
    gx_version: str
    report_uri: str | None = None
    report_json_uri: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    @property
    def unsuccessful(self) -> int:
        return self.evaluated - self.successful

    @property
    def success_percent(self) -> float:
        return 100.0 if not self.evaluated else round(100.0 * self.successful / self.evaluated, 3)

    def to_summary(self, max_failed: int = 10) -> dict[str, Any]:
        """A small JSON-safe dict for XCom, Asset event extras and MLflow tags (``success`` routes branches)."""
        failed = self.failed
        return {
            "success": self.success,
            "status": "passed" if self.success else "failed",
            "dataset_uri": self.dataset_uri,
            "fingerprint": self.fingerprint,
            "suite": self.suite_name,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "successful": self.successful,
            "unsuccessful": self.unsuccessful,
            "success_percent": self.success_percent,
            "failed_expectations": [o.brief() for o in failed[:max_failed]],
            "report_uri": self.report_uri,
            "report_json_uri": self.report_json_uri,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    summary = to_summary  # the name before 0.2: kept for callers' code

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["failed"] = [o.brief() for o in self.failed]
        payload["success_percent"] = self.success_percent
        return payload

    def failure_message(self, max_failed: int = 5) -> str:
        """One paragraph saying what failed and where to read more."""
        failed = self.failed
        head = "; ".join(o.brief() for o in failed[:max_failed])
        more = f"; and {len(failed) - max_failed} more" if len(failed) > max_failed else ""
        where = f" Report: {self.report_uri}" if self.report_uri else ""
        return (
            f"suite '{self.suite_name}' failed on dataset {self.dataset_uri}: {self.unsuccessful} of "
            f"{self.evaluated} expectations failed ({head}{more}).{where}"
        )
