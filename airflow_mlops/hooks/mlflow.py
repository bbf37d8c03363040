"""MlflowHook: one Airflow connection of type ``mlflow`` -> an ``MlflowClient`` and scoped credentials.

Connection fields:

* **host**: the tracking URI, e.g. ``http://mlflow:5000``, ``https://mlflow.example.com/prefix`` or
  ``sqlite:////abs/path/mlflow.db``. A bare host name (``mlflow``) becomes ``http://mlflow:<port>``.
* **port**: added to a bare host name, or to an http(s) URL that has none.
* **login / password**: HTTP basic auth (MLflow's built-in auth app).
* **extra** (read by name, nothing else is forwarded): ``token`` (bearer token, beats basic auth),
  ``registry_uri``, ``scheme`` (``http``/``https`` for a bare host), ``insecure_tls``, ``ca_bundle``,
  ``ui_url`` (the browser-facing URL used by extra links when it differs from the tracking URI),
  ``timeout`` (seconds for the reachability check).

How credentials are scoped (several connections can be used in one process, e.g. by the triggerer):

* :meth:`MlflowHook.get_conn` returns an ``MlflowClient`` whose tracking, tracing and registry REST stores carry
  this connection's credentials and TLS settings themselves (see :mod:`airflow_mlops.hooks._mlflow_client`).
  It never reads or writes MLflow's credential variables in ``os.environ``, so clients of different
  connections can be used from any number of threads at once. Triggers and sensors use only this.
* :meth:`MlflowHook.session` is for what only reads the environment: MLflow's fluent API
  (``mlflow.start_run``), ``models:/`` loading and artifact transfers. It sets MLflow's variables for the
  duration of a ``with`` block and restores them after it, holding one process-wide re-entrant lock
  (``_SESSION_LOCK``) for the whole block, so two sessions in one process never interleave: a second thread
  waits until the first block ends.
* :meth:`MlflowHook.child_env` hands the variables to a child process or pod explicitly.

Credentials never stay in ``os.environ``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import BaseHook

from airflow_mlops.exceptions import ConnectionConfigError, ServiceUnreachable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlflow import MlflowClient

HTTP_SCHEMES = frozenset({"http", "https"})
STORE_SCHEMES = frozenset({"sqlite", "postgresql", "mysql", "mssql", "file", "databricks"})
ALLOWED_EXTRAS = frozenset(
    {"token", "registry_uri", "scheme", "insecure_tls", "ca_bundle", "ui_url", "timeout"}
)

# Every MLflow variable a scoped session may set; all are restored on exit.
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_REGISTRY_URI = "MLFLOW_REGISTRY_URI"
ENV_TOKEN = "MLFLOW_TRACKING_TOKEN"
ENV_USERNAME = "MLFLOW_TRACKING_USERNAME"
ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
ENV_INSECURE = "MLFLOW_TRACKING_INSECURE_TLS"
ENV_CA_BUNDLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"
SECRET_ENV_KEYS = (ENV_TOKEN, ENV_USERNAME, ENV_PASSWORD)
_SCOPED_ENV_KEYS = (ENV_TRACKING_URI, ENV_REGISTRY_URI, *SECRET_ENV_KEYS, ENV_INSECURE, ENV_CA_BUNDLE)

# os.environ and MLflow's global URIs are process-wide: every MlflowHook.session() in the process holds this one
# lock for its whole block. Re-entrant, so a session may open another in the same thread (the inner one
# restores the outer one's values on exit).
_SESSION_LOCK = threading.RLock()


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class MlflowConnectionConfig:
    """What an ``mlflow`` connection resolves to. ``repr`` hides the secrets."""

    conn_id: str
    tracking_uri: str
    registry_uri: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    insecure_tls: bool = False
    ca_bundle: str | None = None
    ui_url: str | None = None
    timeout: float = 10.0

    @property
    def is_http(self) -> bool:
        return urlsplit(self.tracking_uri).scheme in HTTP_SCHEMES

    def __repr__(self) -> str:
        auth = "token" if self.token else ("basic" if self.username else "none")
        return f"MlflowConnectionConfig(conn_id={self.conn_id!r}, tracking_uri={self.tracking_uri!r}, auth={auth})"


def _normalise_tracking_uri(conn_id: str, host: str | None, port: int | None, scheme: str | None) -> str:
    fix = (
        f"Set the host of connection {conn_id!r} to the tracking server URL, e.g. http://mlflow:5000 "
        "(or sqlite:////abs/path/mlflow.db for a local store)."
    )
    if not host or not host.strip():
        raise ConnectionConfigError(f"MLflow connection {conn_id!r} has no host. {fix}")
    host = host.strip()
    if "://" not in host:
        use = (scheme or "http").lower()
        if use not in HTTP_SCHEMES:
            raise ConnectionConfigError(
                f"MLflow connection {conn_id!r} has extra scheme={scheme!r}; use 'http' or 'https'."
            )
        return f"{use}://{host}{f':{port}' if port else ''}".rstrip("/")
    parts = urlsplit(host)
    kind = parts.scheme.lower()
    if kind in HTTP_SCHEMES:
        if not parts.hostname:
            raise ConnectionConfigError(
                f"MLflow connection {conn_id!r} has a URL with no host name: {host!r}. {fix}"
            )
        netloc = parts.netloc
        if port and parts.port is None:
            netloc = f"{netloc}:{port}"
        return urlunsplit((kind, netloc, parts.path.rstrip("/"), parts.query, "")).rstrip("/")
    if kind.split("+")[0] in STORE_SCHEMES:
        return host
    raise ConnectionConfigError(
        f"MLflow connection {conn_id!r} has an unsupported scheme {parts.scheme!r} in {host!r}. "
        f"Use one of {sorted(HTTP_SCHEMES | STORE_SCHEMES)}. {fix}"
    )


class MlflowHook(BaseHook):
    """
    Interact with an MLflow tracking server and model registry through an Airflow connection.

    .. code-block:: python

        hook = MlflowHook(mlflow_conn_id="mlflow_default")
        exp_id = hook.get_conn().create_experiment("churn")  # the client carries the credentials
        with hook.session():  # MLflow's fluent API reads the connection from the environment
            with mlflow.start_run(experiment_id=exp_id):
                mlflow.log_metric("auc", 0.91)

    :param mlflow_conn_id: Airflow connection id of type ``mlflow``.
    :param tracking_uri: Overrides the connection's host.
    :param registry_uri: Overrides the connection's ``registry_uri`` extra.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(
        self,
        mlflow_conn_id: str = default_conn_name,
        *,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        self._tracking_uri_override = tracking_uri
        self._registry_uri_override = registry_uri

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the generic form for MLflow."""
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"host": "Tracking URI", "login": "Username (basic auth)"},
            "placeholders": {
                "host": "http://mlflow:5000",
                "extra": '{"token": "...", "registry_uri": "...", "ui_url": "https://mlflow.example.com"}',
            },
        }

    # ------------------------------------------------------------------ configuration
    @cached_property
    def config(self) -> MlflowConnectionConfig:
        """Resolve the connection once; raises ConnectionConfigError naming the connection id."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            raise ConnectionConfigError(
                f"MLflow connection {self.mlflow_conn_id!r} is not defined. Create it with conn type 'mlflow' "
                f"and host = tracking URI, e.g. AIRFLOW_CONN_{self.mlflow_conn_id.upper()}="
                '\'{"conn_type": "mlflow", "host": "http://mlflow:5000"}\'.'
            ) from None
        if conn.conn_type and conn.conn_type not in {self.conn_type, "http", "https"}:
            raise ConnectionConfigError(
                f"Connection {self.mlflow_conn_id!r} has conn type {conn.conn_type!r}; MlflowHook needs 'mlflow'."
            )
        try:
            raw_extra = conn.extra_dejson
        except Exception:  # noqa: BLE001 - Airflow raises different types for a malformed extra; all mean the same fix
            raise ConnectionConfigError(
                f"MLflow connection {self.mlflow_conn_id!r} has an extra that is not a JSON object."
            ) from None
        extra = {k: v for k, v in raw_extra.items() if k in ALLOWED_EXTRAS}
        unknown = sorted(set(raw_extra) - ALLOWED_EXTRAS)
        if unknown:
            self.log.warning(
                "Ignoring unknown extras %s of MLflow connection %r (allowed: %s)",
                unknown,
                self.mlflow_conn_id,
                sorted(ALLOWED_EXTRAS),
            )
        host = self._tracking_uri_override or conn.host
        port = None if self._tracking_uri_override else conn.port
        tracking_uri = _normalise_tracking_uri(self.mlflow_conn_id, host, port, extra.get("scheme"))
        if conn.login and not conn.password:
            raise ConnectionConfigError(
                f"MLflow connection {self.mlflow_conn_id!r} has a login but no password; set both or neither."
            )
        try:
            timeout = float(extra.get("timeout", 10))
        except (TypeError, ValueError):
            raise ConnectionConfigError(
                f"MLflow connection {self.mlflow_conn_id!r} has extra timeout={extra.get('timeout')!r}; "
                "give a number of seconds."
            ) from None
        cfg = MlflowConnectionConfig(
            conn_id=self.mlflow_conn_id,
            tracking_uri=tracking_uri,
            registry_uri=self._registry_uri_override or extra.get("registry_uri") or None,
            username=conn.login or None,
            password=conn.password or None,
            token=extra.get("token") or None,
            insecure_tls=_truthy(extra.get("insecure_tls", False)),
            ca_bundle=extra.get("ca_bundle") or None,
            ui_url=(extra.get("ui_url") or "").rstrip("/") or None,
            timeout=timeout,
        )
        _mask(cfg.password, cfg.token)
        return cfg

    @property
    def tracking_uri(self) -> str:
        return self.config.tracking_uri

    @property
    def registry_uri(self) -> str:
        return self.config.registry_uri or self.config.tracking_uri

    @property
    def ui_url(self) -> str | None:
        """Browser URL of the MLflow UI (``ui_url`` extra, else the http tracking URI, else None)."""
        cfg = self.config
        return cfg.ui_url or (cfg.tracking_uri if cfg.is_http else None)

    # ------------------------------------------------------------------ environment hand-off
    def public_env(self) -> dict[str, str]:
        """Non-secret MLflow variables for a child process or pod."""
        cfg = self.config
        env = {ENV_TRACKING_URI: cfg.tracking_uri}
        if cfg.registry_uri:
            env[ENV_REGISTRY_URI] = cfg.registry_uri
        if cfg.insecure_tls:
            env[ENV_INSECURE] = "true"
        if cfg.ca_bundle:
            env[ENV_CA_BUNDLE] = cfg.ca_bundle
        return env

    def secret_env(self) -> dict[str, str]:
        """Secret MLflow variables (token or basic auth); registered with Airflow's log masker."""
        cfg = self.config
        if cfg.token:
            return {ENV_TOKEN: cfg.token}
        if cfg.username and cfg.password:
            return {ENV_USERNAME: cfg.username, ENV_PASSWORD: cfg.password}
        return {}

    def child_env(self) -> dict[str, str]:
        """Every MLflow variable a child process needs to reach this server as this connection."""
        return {**self.public_env(), **self.secret_env()}

    # ------------------------------------------------------------------ clients
    def check_reachable(self) -> None:
        """Fail fast with the server URL when an http tracking server does not answer ``/health``."""
        cfg = self.config
        if not cfg.is_http:
            return
        import requests

        url = f"{cfg.tracking_uri}/health"
        verify: bool | str = False if cfg.insecure_tls else (cfg.ca_bundle or True)
        try:
            response = requests.get(url, timeout=cfg.timeout, verify=verify)
        except requests.RequestException as err:
            raise ServiceUnreachable(
                f"MLflow tracking server {cfg.tracking_uri} (connection {cfg.conn_id!r}) is unreachable: "
                f"{type(err).__name__}. Check that the server is running and the connection host is right."
            ) from None
        if response.status_code >= 500 or response.status_code == 404:
            raise ServiceUnreachable(
                f"MLflow tracking server {cfg.tracking_uri} (connection {cfg.conn_id!r}) answered "
                f"HTTP {response.status_code} on /health. Check the server and the connection host."
            )

    def get_conn(self) -> MlflowClient:
        """
        An ``MlflowClient`` bound to this connection's URIs that sends this connection's credentials itself.

        Nothing is read from or written to ``os.environ`` for credentials, so it is safe to use from several
        threads and next to clients of other connections. Its artifact transfers and MLflow's fluent API do
        read the environment: use :meth:`session` for those.
        """
        from airflow_mlops.hooks._mlflow_client import scoped_client

        self.check_reachable()
        return scoped_client(self.config, self.tracking_uri, self.registry_uri)

    @contextlib.contextmanager
    def session(self) -> Iterator[MlflowClient]:
        """
        Yield :meth:`get_conn`'s client with this connection also active for MLflow's fluent API.

        Inside the block ``mlflow.start_run``, ``mlflow.pyfunc.load_model("models:/...")`` and artifact
        transfers use this server and these credentials; on exit every variable and the global tracking URI
        return to what they were. The block holds the process-wide ``_SESSION_LOCK``, so sessions in one
        process take turns (another thread's session waits until this block ends); keep the block short, and
        use :meth:`get_conn` alone for client calls. Code in other threads that reads MLflow's variables
        outside any session can still see this session's values while it is open.
        """
        import mlflow
        import mlflow.tracking._model_registry.utils as registry_utils
        import mlflow.tracking._tracking_service.utils as tracking_utils

        client = self.get_conn()  # the reachability check runs before taking the lock
        with _SESSION_LOCK:
            saved_env = {key: os.environ.get(key) for key in _SCOPED_ENV_KEYS}
            saved_tracking = tracking_utils._tracking_uri
            saved_registry = registry_utils._registry_uri
            try:
                for key in _SCOPED_ENV_KEYS:
                    os.environ.pop(key, None)
                os.environ.update(self.child_env())
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.registry_uri)
                yield client
            finally:
                for key, value in saved_env.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                tracking_utils._tracking_uri = saved_tracking
                registry_utils._registry_uri = saved_registry

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection end to end without raising: ``(ok, message)``."""
        try:
            self.get_conn().search_experiments(max_results=1)
        except Exception as err:  # noqa: BLE001 - report, never raise: the UI shows the message
            return False, _one_line(err)
        return True, f"Connected to MLflow at {self.tracking_uri}"


def _mask(*secrets: str | None) -> None:
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first}"[:500]
