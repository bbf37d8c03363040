"""Template macros: ``{{ macros.airflow_mlops.model_uri('churn', 'champion') }}`` -> ``models:/churn@champion``.

``run_date(dag_run)`` and ``run_slug(run_id)`` (from :mod:`airflow_mlops.templates.macros`) give per-run paths
that work in runs without a logical date: ``{{ macros.airflow_mlops.run_slug(run_id) }}``.
"""

from __future__ import annotations


def model_uri(name: str, alias_or_version: str | int | None = None) -> str:
    """``models:/<name>@<alias>`` for an alias, ``models:/<name>/<version>`` for a version number."""
    if alias_or_version is None or alias_or_version == "":
        from airflow_mlops.settings import get_settings

        alias_or_version = get_settings().champion_alias
    if isinstance(alias_or_version, int) or str(alias_or_version).isdigit():
        return f"models:/{name}/{alias_or_version}"
    return f"models:/{name}@{alias_or_version}"


def champion_uri(name: str) -> str:
    """``models:/<name>@<champion alias>`` with the alias from ``[mlops] champion_alias``."""
    return model_uri(name, None)
