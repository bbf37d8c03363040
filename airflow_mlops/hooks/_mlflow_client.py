"""Build an ``MlflowClient`` whose REST stores carry one connection's credentials, with no ``os.environ``.

A stock ``MlflowClient`` talks to an http(s) server through a ``RestStore`` built with
``partial(mlflow.utils.credentials.get_default_host_creds, uri)``, which reads ``MLFLOW_TRACKING_USERNAME``,
``..._PASSWORD``, ``..._TOKEN`` and the TLS variables from the process environment on *every request*. In a
process that serves several connections at once (the triggerer, a threaded API server) that environment is
shared, so credentials could cross between servers. :func:`scoped_client` gives the client's tracking, tracing
and registry clients their own ``RestStore`` whose ``get_host_creds`` always returns this connection's
``MlflowHostCreds``.

MLflow internals this relies on (``mlflow>=3.17,<3.18``; ``tests/unit/hooks/test_mlflow.py::
test_scoped_client_relies_on_these_mlflow_internals`` fails loudly if a release renames them):

* ``MlflowClient._tracking_client`` (a ``TrackingServiceClient``) and ``MlflowClient._tracing_client`` (a
  ``TracingClient``), set in ``MlflowClient.__init__``;
* ``MlflowClient._get_registry_client()``, which returns the ``ModelRegistryClient`` cached in the instance
  attribute ``_registry_client_lazy`` and only builds one when that attribute is unset;
* the ``store`` property of ``TrackingServiceClient``, ``TracingClient`` and ``ModelRegistryClient``, through
  which every call of theirs reaches the server;
* ``RestStore(get_host_creds)`` in ``mlflow.store.tracking.rest_store`` and
  ``mlflow.store.model_registry.rest_store``, and ``mlflow.utils.rest_utils.MlflowHostCreds``.

:func:`scoped_client` checks the attributes it replaces and raises :class:`MlflowInternalsChanged` rather
than fall back to environment credentials. Artifact repositories (``log_artifact``, ``download_artifacts``,
``models:/`` loading) and MLflow's fluent API are not covered: they always read the environment, which is why
:meth:`airflow_mlops.hooks.mlflow.MlflowHook.session` still exists.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.utils.rest_utils import MlflowHostCreds

    from airflow_mlops.hooks.mlflow import MlflowConnectionConfig

_REGISTRY_ATTR = "_registry_client_lazy"


class MlflowInternalsChanged(RuntimeError):
    """The installed MLflow no longer has the client internals :func:`scoped_client` replaces."""


class FixedHostCreds:
    """A picklable ``get_host_creds`` callable that returns the same ``MlflowHostCreds`` for every request."""

    __slots__ = ("_creds",)

    def __init__(self, creds: MlflowHostCreds) -> None:
        self._creds = creds

    def __call__(self) -> MlflowHostCreds:
        return self._creds

    def __repr__(self) -> str:  # never show the secrets
        return f"FixedHostCreds(host={self._creds.host!r})"


def host_creds(cfg: MlflowConnectionConfig, host: str) -> MlflowHostCreds:
    """
    The ``MlflowHostCreds`` of connection ``cfg`` for server ``host``.

    Credentials and TLS settings come from the connection only (a token beats basic auth, as in
    ``MlflowHook.secret_env``). Transport settings a connection has no field for (client certificate,
    SigV4 signing, an ``MLFLOW_TRACKING_AUTH`` provider) are read from the environment, never written.
    """
    from mlflow.environment_variables import (
        MLFLOW_TRACKING_AUTH,
        MLFLOW_TRACKING_AWS_SIGV4,
        MLFLOW_TRACKING_CLIENT_CERT_PATH,
    )
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(
        host=host,
        username=None if cfg.token else cfg.username,
        password=None if cfg.token else cfg.password,
        token=cfg.token,
        ignore_tls_verification=cfg.insecure_tls,
        server_cert_path=None if cfg.insecure_tls else cfg.ca_bundle,
        client_cert_path=MLFLOW_TRACKING_CLIENT_CERT_PATH.get(),
        aws_sigv4=MLFLOW_TRACKING_AWS_SIGV4.get(),
        auth=MLFLOW_TRACKING_AUTH.get(),
    )


class _FixedStore:
    """Mixin for MLflow's service clients: ``store`` is the one given at construction, never rebuilt."""

    def __init__(self, *args: Any, store: Any, **kwargs: Any) -> None:
        self._scoped_store = store
        super().__init__(*args, **kwargs)

    @property
    def store(self) -> Any:
        return self._scoped_store


@functools.cache
def _scoped_classes() -> dict[str, type]:
    """MLflow's tracking, tracing and registry service clients with a fixed store (built on first use, so
    importing this module never imports MLflow)."""
    from mlflow.tracing.client import TracingClient
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    return {
        base.__name__: type(f"_Scoped{base.__name__}", (_FixedStore, base), {})
        for base in (TrackingServiceClient, TracingClient, ModelRegistryClient)
    }


def _is_http(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in {"http", "https"}


def _changed(what: str) -> MlflowInternalsChanged:
    import mlflow

    return MlflowInternalsChanged(
        f"MLflow {mlflow.__version__} changed {what}, which airflow_mlops needs to give each MLflow "
        "connection its own credentials. Install the MLflow version airflow-mlops pins (mlflow>=3.17,<3.18)."
    )


def scoped_client(cfg: MlflowConnectionConfig, tracking_uri: str, registry_uri: str) -> MlflowClient:
    """An ``MlflowClient`` for these URIs whose http(s) requests carry ``cfg``'s credentials only.

    Non-http stores (``sqlite://``, ``file:``, ``databricks``) keep MLflow's default store.
    """
    from mlflow import MlflowClient
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracing.client import TracingClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    scoped = _scoped_classes()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    if _is_http(tracking_uri):
        if not isinstance(getattr(client, "_tracking_client", None), TrackingServiceClient):
            raise _changed("MlflowClient._tracking_client")
        if not isinstance(getattr(client, "_tracing_client", None), TracingClient):
            raise _changed("MlflowClient._tracing_client")
        store = TrackingRestStore(FixedHostCreds(host_creds(cfg, tracking_uri)))
        client._tracking_client = scoped["TrackingServiceClient"](tracking_uri, store=store)
        client._tracing_client = scoped["TracingClient"](tracking_uri, store=store)
    if _is_http(registry_uri):
        registry_store = RegistryRestStore(FixedHostCreds(host_creds(cfg, registry_uri)))
        setattr(
            client,
            _REGISTRY_ATTR,
            scoped["ModelRegistryClient"](registry_uri, tracking_uri, store=registry_store),
        )
        if client._get_registry_client().store is not registry_store:
            raise _changed(f"MlflowClient._get_registry_client (it no longer uses {_REGISTRY_ATTR})")
    return client
