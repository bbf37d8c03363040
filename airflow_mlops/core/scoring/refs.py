"""Model references: a registry URI resolved once to one concrete version that every shard and retry loads.

The lookups themselves (and their "not found" messages) are the registry's: :mod:`airflow_mlops.core.registry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_mlops.core.registry import get_latest_version, get_model_version, require_alias_version
from airflow_mlops.exceptions import MlopsConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

_MODEL_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))?/?$")


@dataclass(frozen=True)
class ModelRef:
    """One concrete registered model version, resolved once from whatever URI the user gave."""

    name: str
    version: str
    run_id: str | None
    requested_uri: str
    alias: str | None = None
    source: str | None = None

    @property
    def uri(self) -> str:
        """The concrete URI (``models:/<name>/<version>``) every shard and retry loads."""
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        return f"{self.name}@{self.alias} (v{self.version})" if self.alias else f"{self.name} v{self.version}"


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """Split a registry URI into ``(name, alias, version)``; raise MlopsConfigError for any other form."""
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise MlopsConfigError(
            "model URI is empty; give a registry URI such as models:/churn@champion or models:/churn/3."
        )
    match = _MODEL_URI_RE.match(model_uri.strip())
    if not match:
        raise MlopsConfigError(
            f"model URI {model_uri!r} is not a registry URI; batch inference takes models:/<name>@<alias>, "
            "models:/<name>/<version> or models:/<name>/latest (register the model first)."
        )
    return match["name"], match["alias"], match["version"]


def resolve_model(client: MlflowClient, model_uri: str) -> ModelRef:
    """Resolve a registry URI to one concrete version; ModelNotFound names the aliases or versions that exist."""
    name, alias, version = parse_model_uri(model_uri)
    if alias is not None:
        mv = get_model_version(client, name, require_alias_version(client, name, alias))
    elif version is None or version.lower() == "latest":
        mv = get_latest_version(client, name)
    elif version.isdigit():
        mv = get_model_version(client, name, version)
    else:
        raise MlopsConfigError(
            f"model URI {model_uri!r} has version {version!r}; give a number, 'latest' or use @<alias>."
        )
    return ModelRef(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id or None,
        requested_uri=model_uri.strip(),
        alias=alias,
        source=getattr(mv, "source", None),
    )
