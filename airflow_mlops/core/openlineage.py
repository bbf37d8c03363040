"""What each operator reports to OpenLineage, as plain data: datasets by URI, models as MODEL datasets.

Framework-free (no Airflow, no ``openlineage`` import): :func:`lineage_of` turns an operator's XCom summary into a
:class:`LineageSpec`; :mod:`airflow_mlops.operators.openlineage` turns that into the OpenLineage provider's
``OperatorLineage``. Keeping the mapping here means it is tested without the provider, and every operator names
a dataset the same way, so the events of one lifecycle join into one graph:

    training data --validate--> (assertions)    training data --train--> runs/<run>/model --register-->
    models/<name> --gate--> models/<name> --score--> predictions;  data + model --drift--> drift report

Naming follows the OpenLineage spec: a local file is namespace ``file``, name its absolute path; ``s3://b/k`` is
``s3://b`` + ``k`` (an Airflow connection named in the URI is dropped: the same data whoever reads it). A
registered model is ``mlflow://<tracking server>`` + ``models/<name>`` with its version in the dataset version
facet and the ``mlops`` facet (:class:`ModelFacts`); a run's logged model is ``runs/<run_id>/model``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The OpenLineage dataset type of models (DatasetTypeDatasetFacet.datasetType).
MODEL_TYPE = "MODEL"


@dataclass(frozen=True)
class Assertion:
    """One data-quality check on a dataset (a GX expectation): the assertions facet's row."""

    assertion: str
    success: bool
    column: str | None = None


@dataclass(frozen=True)
class ModelFacts:
    """The ``mlops`` facet of a MODEL dataset: what the provider knows of the version at this step."""

    name: str
    version: str | None = None
    alias: str | None = None
    gate_decision: str | None = None
    drift_share: float | None = None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "gateDecision": self.gate_decision,
            "driftShare": self.drift_share,
            "runId": self.run_id,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class LineageDataset:
    """A dataset as OpenLineage names it, with the facts the provider knows of it."""

    namespace: str
    name: str
    kind: str = "data"  # data | report | predictions | model
    version: str | None = None  # data: the content fingerprint; model: the registered version
    uri: str | None = None
    model: ModelFacts | None = None
    assertions: tuple[Assertion, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


@dataclass(frozen=True)
class LineageSpec:
    """The inputs and outputs of one task."""

    inputs: tuple[LineageDataset, ...] = ()
    outputs: tuple[LineageDataset, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)


# ---------------------------------------------------------------- naming
def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a data URI, by the OpenLineage naming spec."""
    from airflow_mlops.core.storage import split_conn_id

    uri = str(uri).strip()
    if "://" not in uri:
        return "file", os.path.normpath(os.path.abspath(uri))
    scheme, rest = uri.split("://", 1)
    if scheme.lower() == "local":
        return "file", os.path.normpath(os.path.abspath(rest))
    if scheme.lower() == "file":
        host, _, path = rest.partition("/")
        if host in {"", "localhost"}:
            return "file", os.path.normpath("/" + path)
        return f"file://{host}", "/" + path  # a path on another machine
    try:  # an Airflow connection id (s3://conn@bucket/key) is not part of the data; abfs://container@account is
        uri = split_conn_id(uri)[0]
    except Exception:  # noqa: BLE001 - naming never fails a task: credentials in a URI are refused where it is read
        pass
    scheme, rest = uri.split("://", 1)
    netloc, _, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc}", path.rstrip("/") or "/"


def mlflow_namespace(tracking_uri: str | None) -> str:
    """``mlflow://<host:port>`` of an HTTP server, ``mlflow+<scheme>://<host><path>`` of a store; no secrets."""
    if not tracking_uri:
        return "mlflow"
    parts = urlsplit(str(tracking_uri))
    host = parts.netloc.rpartition("@")[2]  # user:password@ never reaches lineage
    if parts.scheme in {"http", "https"}:
        return f"mlflow://{host}{parts.path.rstrip('/')}"
    if parts.scheme:
        return f"mlflow+{parts.scheme}://{host}{parts.path}"
    return f"mlflow://{tracking_uri}"


def data(
    uri: Any, *, fingerprint: Any = None, kind: str = "data", assertions: tuple[Assertion, ...] = ()
) -> LineageDataset:
    namespace, name = dataset_name(str(uri))
    return LineageDataset(
        namespace, name, kind=kind, version=str(fingerprint) if fingerprint else None, uri=str(uri),
        assertions=assertions,
    )  # fmt: skip


def registered_model(tracking_uri: str | None, facts: ModelFacts) -> LineageDataset:
    """The registered model as a MODEL dataset: one node per model, the version in its facets."""
    return LineageDataset(
        mlflow_namespace(tracking_uri),
        f"models/{facts.name}",
        kind="model",
        version=facts.version,
        model=facts,
    )


def run_model(tracking_uri: str | None, run_id: str) -> LineageDataset:
    """The model a training run logged (before it is registered) as a MODEL dataset."""
    return LineageDataset(
        mlflow_namespace(tracking_uri), f"runs/{run_id}/model", kind="model", model=ModelFacts(name=f"runs/{run_id}/model", run_id=run_id)
    )  # fmt: skip


def alias_of(model_uri: Any) -> str | None:
    """``champion`` of ``models:/churn@champion``; None for a version or another kind of URI."""
    text = str(model_uri or "")
    if text.startswith("models:/") and "@" in text:
        return text.rsplit("@", 1)[1].strip("/") or None
    return None


# ---------------------------------------------------------------- operators' summaries -> lineage
def _text(summary: Mapping[str, Any], key: str) -> str | None:
    value = summary.get(key)
    return None if value in (None, "") else str(value)


def _reports(summary: Mapping[str, Any], *keys: str) -> tuple[LineageDataset, ...]:
    return tuple(data(summary[k], kind="report") for k in keys if _text(summary, k))


def validation_lineage(summary: Mapping[str, Any], assertions: tuple[Assertion, ...] = ()) -> LineageSpec:
    """The validated dataset (with its fingerprint and the GX assertions) in; the HTML and JSON reports out."""
    uri = _text(summary, "dataset_uri")
    if uri is None:
        return LineageSpec()
    dataset = data(uri, fingerprint=summary.get("fingerprint"), assertions=assertions)
    return LineageSpec((dataset,), _reports(summary, "report_uri", "report_json_uri"))


def training_lineage(summary: Mapping[str, Any], tracking_uri: str | None) -> LineageSpec:
    """The training data in; the run's logged model out."""
    inputs: tuple[LineageDataset, ...] = ()
    if _text(summary, "dataset_uri"):
        inputs = (data(summary["dataset_uri"], fingerprint=summary.get("dataset_fingerprint")),)
    run_id = _text(summary, "run_id")
    return LineageSpec(inputs, (run_model(tracking_uri, run_id),) if run_id else ())


def registration_lineage(summary: Mapping[str, Any], tracking_uri: str | None) -> LineageSpec:
    """The run's logged model in; the registered model (the new version) out."""
    name, run_id = _text(summary, "name"), _text(summary, "run_id")
    if name is None:
        return LineageSpec()
    out = registered_model(tracking_uri, ModelFacts(name, _text(summary, "version"), run_id=run_id))
    return LineageSpec((run_model(tracking_uri, run_id),) if run_id else (), (out,))


def gate_lineage(summary: Mapping[str, Any], tracking_uri: str | None, champion_alias: str) -> LineageSpec:
    """The candidate version in; the registered model out with the gate's decision (and the champion alias)."""
    name, version = _text(summary, "name"), _text(summary, "version")
    if name is None:
        return LineageSpec()
    decision = _text(summary, "decision")
    candidate = registered_model(tracking_uri, ModelFacts(name, version))
    promoted = summary.get("promoted") or decision == "promoted"
    out = ModelFacts(name, version, alias=champion_alias if promoted else None, gate_decision=decision)
    return LineageSpec((candidate,), (registered_model(tracking_uri, out),))


def alias_move_lineage(summary: Mapping[str, Any], tracking_uri: str | None) -> LineageSpec:
    """A rollback or manual move: the model in, the model with the alias on its new version out."""
    name = _text(summary, "name")
    if name is None:
        return LineageSpec()
    before = ModelFacts(name, _text(summary, "previous_version"), alias=_text(summary, "alias"))
    after = ModelFacts(name, _text(summary, "version"), alias=_text(summary, "alias"))
    return LineageSpec((registered_model(tracking_uri, before),), (registered_model(tracking_uri, after),))


def scoring_lineage(
    summary: Mapping[str, Any], tracking_uri: str | None, alias: str | None = None
) -> LineageSpec:
    """The input batch and the pinned model version in; the predictions (and their manifest) out."""
    inputs: list[LineageDataset] = []
    if _text(summary, "input_uri"):
        inputs.append(data(summary["input_uri"], fingerprint=summary.get("input_fingerprint")))
    name = _text(summary, "model_name")
    if name:
        facts = ModelFacts(
            name, _text(summary, "model_version"), alias=alias, run_id=_text(summary, "model_run_id")
        )
        inputs.append(registered_model(tracking_uri, facts))
    outputs = tuple(data(summary[k], kind=kind) for k, kind in (("output_uri", "predictions"), ("manifest_uri", "report")) if _text(summary, k))  # fmt: skip
    return LineageSpec(tuple(inputs), outputs)


def drift_lineage(summary: Mapping[str, Any], tracking_uri: str | None) -> LineageSpec:
    """Reference and current data (and the model) in; the drift reports out, the drift share on the model."""
    inputs: list[LineageDataset] = []
    for side in ("reference", "current"):
        if _text(summary, f"{side}_uri"):
            inputs.append(data(summary[f"{side}_uri"], fingerprint=summary.get(f"{side}_fingerprint")))
    name = _text(summary, "model_name")
    if name:
        share = summary.get("drift_share")
        facts = ModelFacts(
            name,
            _text(summary, "model_version"),
            drift_share=float(share) if isinstance(share, int | float) else None,
        )
        inputs.append(registered_model(tracking_uri, facts))
    return LineageSpec(tuple(inputs), _reports(summary, "report_uri", "report_json_uri"))


def watched_model_lineage(summary: Mapping[str, Any], tracking_uri: str | None) -> LineageSpec:
    """A sensor: the model it watched in (the version its alias points to, or the drift share it saw)."""
    name = _text(summary, "name") or _text(summary, "model_name")
    if name is None:
        return LineageSpec()
    share = summary.get("drift_share")
    facts = ModelFacts(
        name,
        _text(summary, "version") or _text(summary, "model_version"),
        alias=_text(summary, "alias"),
        drift_share=float(share) if isinstance(share, int | float) else None,
    )
    return LineageSpec((registered_model(tracking_uri, facts),))
