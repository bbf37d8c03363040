"""OpenLineage for every operator: the ``get_openlineage_facets_on_*`` methods the OpenLineage provider calls.

An operator mixes in :class:`OpenLineageMixin`, keeps its XCom summary in ``self._mlops_summary`` when it has one
and implements :meth:`~OpenLineageMixin.lineage_spec`: that summary -> a plain
:class:`~airflow_mlops.core.openlineage.LineageSpec`. Nothing here runs unless the OpenLineage provider is
installed and configured (``pip install airflow-mlops[openlineage]`` and an ``[openlineage] transport``); the
``openlineage`` packages are imported only inside these methods, never when a DAG file is parsed. A lineage
method never fails the task: the provider logs what it raises and sends the event without it.

Datasets: every data URI with its fingerprint as the dataset version, reports and predictions by URI, the GX
results as the data-quality assertions facet, and models as datasets of type ``MODEL`` with the version in
the version facet and an ``mlops`` facet (name, version, alias, gate decision, drift share, run id).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops.core.openlineage import LineageDataset, LineageSpec

#: Where the ``mlops`` facet's JSON schema is published (the OpenLineage custom-facet convention).
MLOPS_FACET_SCHEMA = (
    "https://github.com/airflow-mlops/airflow-mlops/blob/main/docs/openlineage.md#the-mlops-facet"
)


@functools.cache
def _mlops_facet_class() -> type:
    """The ``mlops`` dataset facet, built on first use (attrs and openlineage load only when lineage is sent)."""
    import attrs
    from openlineage.client.facet_v2 import DatasetFacet

    @attrs.define
    class MlopsModelDatasetFacet(DatasetFacet):  # type: ignore[misc]
        """airflow-mlops' facts of a model version at one step of the lifecycle."""

        name: str
        version: str | None = attrs.field(default=None)
        alias: str | None = attrs.field(default=None)
        gateDecision: str | None = attrs.field(default=None)
        driftShare: float | None = attrs.field(default=None)
        runId: str | None = attrs.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return MLOPS_FACET_SCHEMA

    return MlopsModelDatasetFacet


def _facets(dataset: LineageDataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """(dataset facets, input facets) of one dataset."""
    from openlineage.client.facet_v2 import (
        data_quality_assertions_dataset,
        dataset_type_dataset,
        dataset_version_dataset,
        datasource_dataset,
    )

    facets: dict[str, Any] = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=dataset.namespace, uri=dataset.namespace)
    }
    input_facets: dict[str, Any] = {}
    if dataset.version:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=dataset.version)
    if dataset.kind == "model":
        facets["datasetType"] = dataset_type_dataset.DatasetTypeDatasetFacet(datasetType="MODEL")
    if dataset.model is not None:
        facets["mlops"] = _mlops_facet_class()(**dataset.model.to_dict())
    if dataset.assertions:
        module = data_quality_assertions_dataset
        input_facets["dataQualityAssertions"] = module.DataQualityAssertionsDatasetFacet(
            assertions=[
                module.Assertion(assertion=a.assertion, success=a.success, column=a.column)
                for a in dataset.assertions
            ]
        )
    return facets, input_facets


def to_operator_lineage(spec: LineageSpec) -> Any:
    """The provider's ``OperatorLineage`` of a plain spec."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    inputs, outputs = [], []
    for dataset in spec.inputs:
        facets, input_facets = _facets(dataset)
        inputs.append(InputDataset(dataset.namespace, dataset.name, facets=facets, inputFacets=input_facets))
    for dataset in spec.outputs:
        facets, _ = _facets(dataset)
        outputs.append(OutputDataset(dataset.namespace, dataset.name, facets=facets))
    return OperatorLineage(inputs=inputs, outputs=outputs)


class OpenLineageMixin:
    """The OpenLineage provider's methods over :meth:`lineage_spec` of the kept summary."""

    _mlops_summary: dict[str, Any] | None = None

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The task's datasets from its XCom summary (``{}`` when it failed before one)."""
        raise NotImplementedError

    def _tracking_uri(self) -> str | None:
        """
        The tracking URI of the MLflow connection the task already resolved (the namespace of its models), else
        None. Never looks a connection up: the provider may call this in a forked copy of the task process,
        where a request to the worker's supervisor could interleave with the task's own.
        """
        hook = self.__dict__.get("mlflow_hook")  # the cached_property of MlflowBaseOperator, once built
        config = getattr(hook, "__dict__", {}).get("config")  # MlflowHook.config, once resolved
        return str(config.tracking_uri) if config is not None else None

    def _lineage(self, summary: dict[str, Any]) -> Any:
        spec = self.lineage_spec(summary)
        if (
            self._tracking_uri() is None
        ):  # models unnamed by their server would be dangling nodes: leave them out
            from dataclasses import replace

            spec = replace(
                spec,
                inputs=tuple(d for d in spec.inputs if d.kind != "model"),
                outputs=tuple(d for d in spec.outputs if d.kind != "model"),
            )
        return to_operator_lineage(spec)

    def get_openlineage_facets_on_start(self) -> Any:
        """What the task knows it will read before it runs (its rendered arguments)."""
        return self._lineage({})

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return self._lineage(dict(self._mlops_summary or {}))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)
