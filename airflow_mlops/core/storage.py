"""URIs and atomic writes over fsspec: local paths, ``file://``, ``s3://``, ``gs://`` and any other protocol.

Everything the provider writes (reports, predictions, manifests, checkpoints) goes through
:func:`atomic_write` or :func:`atomic_local_path`, so a reader never sees a half-written file and a retry
never leaves a stray one behind: data goes to a hidden temporary name next to the target and is renamed into
place only when it is complete. Hidden names (leading ``.``) are skipped by pyarrow's dataset discovery.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import tempfile
import time
import uuid
from typing import IO, TYPE_CHECKING, Any

from airflow_mlops.exceptions import UnsafeUriError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from fsspec import AbstractFileSystem

TMP_PREFIX = ".mlops-tmp-"
LOCK_PREFIX = ".mlops-lock-"


def _has_scheme(uri: str) -> bool:
    head, sep, _ = uri.partition("://")
    return bool(sep) and head.replace("+", "").replace("-", "").isalnum() and len(head) > 1


def check_uri(uri: str, *, what: str = "URI") -> str:
    """Return ``uri`` stripped, or raise when it is empty or has a ``..`` segment (path traversal)."""
    if not isinstance(uri, str) or not uri.strip():
        raise UnsafeUriError(f"{what} is empty; give a path or an fsspec URI such as s3://bucket/key.")
    uri = uri.strip()
    path = uri.split("://", 1)[1] if _has_scheme(uri) else uri
    if ".." in path.replace("\\", "/").split("/"):
        raise UnsafeUriError(
            f"{what} {uri!r} contains a '..' segment; give a normalised URI without parent-directory steps."
        )
    return uri


# Protocols whose URIs carry an ``@`` of their own (``abfs://container@account.dfs.core.windows.net/path``):
# there the part before ``@`` is not an Airflow connection id.
_NATIVE_AT_PROTOCOLS = frozenset({"abfs", "abfss", "az", "adl", "wasb", "wasbs"})
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def split_conn_id(uri: str) -> tuple[str, str | None]:
    """
    ``s3://aws_default@bucket/key`` -> (``s3://bucket/key``, ``aws_default``): the Airflow connection a URI names,
    as :class:`~airflow.sdk.ObjectStoragePath` writes it; other URIs come back unchanged with ``None``.
    """
    if not _has_scheme(uri):
        return uri, None
    scheme, rest = uri.split("://", 1)
    netloc, sep, tail = rest.partition("/")
    if "@" not in netloc or scheme.lower() in _NATIVE_AT_PROTOCOLS or scheme.lower() in {"file", "local"}:
        return uri, None
    conn_id, _, host = netloc.rpartition("@")
    if not _CONN_ID.match(conn_id):
        raise UnsafeUriError(
            f"URI {_redact(uri)!r} carries credentials before '@'; keep them in an Airflow connection and name "
            f"it instead: {scheme}://<conn_id>@{host}/... (or set [mlops] storage_conn_id)."
        )
    return f"{scheme}://{host}{sep}{tail}", conn_id


def _redact(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    netloc, sep, tail = rest.partition("/")
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{sep}{tail}" if "@" in netloc else uri


def storage_conn_id(uri: str) -> str | None:
    """The Airflow connection ``uri`` is read and written with: its own (``s3://conn@bucket``), else
    ``[mlops] storage_conn_id`` for object-store URIs, else ``None`` (ambient credentials)."""
    return _resolve(check_uri(uri))[1]


def _resolve(uri: str) -> tuple[str, str | None]:
    """(``uri`` without its connection id, the connection it is opened with) for a checked ``uri``."""
    plain, conn_id = split_conn_id(uri)
    if conn_id is None and not is_local(plain):
        from airflow_mlops.settings import get_settings

        conn_id = get_settings().storage_conn_id or None
    return plain, conn_id


def strip_conn_id(uri: str) -> str:
    """``uri`` without the connection id it names (the form Asset URIs and MLflow lineage tags carry)."""
    return split_conn_id(check_uri(uri))[0]


def asset_uri(uri: str) -> str:
    """
    The Asset URI of a data URI: local paths become absolute ``file://`` URIs and a named connection is dropped
    (``s3://aws_default@bucket/key`` -> ``s3://bucket/key``), so the same data is one Asset whichever credentials
    reached it.
    """
    uri = check_uri(uri)
    if is_local(uri):
        return "file://" + local_path(uri).replace(os.sep, "/")
    return strip_conn_id(uri)


def get_fs(uri: str) -> tuple[AbstractFileSystem, str]:
    """
    The fsspec filesystem and the protocol-less path for ``uri`` (local paths become absolute).

    Object-store URIs are opened with the Airflow connection they name (``s3://aws_default@bucket/key``) or
    with ``[mlops] storage_conn_id``; with neither, fsspec's ambient credentials (environment, instance role).
    """
    from fsspec.core import url_to_fs

    uri = check_uri(uri)
    if not _has_scheme(uri):
        uri = os.path.abspath(os.path.expanduser(uri))
    plain, conn_id = _resolve(uri)
    if conn_id is None:
        fs, path = url_to_fs(plain)
        return fs, path
    fs = connection_fs(plain.split("://", 1)[0], conn_id)
    return fs, fs._strip_protocol(plain)


_CONNECTION_FS: dict[tuple[str, str], AbstractFileSystem] = {}


def connection_fs(protocol: str, conn_id: str) -> AbstractFileSystem:
    """
    The filesystem of ``protocol`` with the credentials of Airflow connection ``conn_id``, built by the
    provider that registers the protocol (the Amazon provider for ``s3``); one per process and connection.
    """
    key = (protocol, conn_id)
    cached = _CONNECTION_FS.get(key)
    if cached is not None:
        return cached
    from airflow.sdk import BaseHook, ObjectStoragePath

    from airflow_mlops.exceptions import MlopsConfigError

    try:
        # First, so a missing connection is an error here, not a silent fall-back to anonymous access.
        BaseHook.get_connection(conn_id)
    except Exception as err:
        raise MlopsConfigError(
            f"the Airflow connection {conn_id!r} for {protocol}:// storage was not found ({type(err).__name__}: "
            f"{err}). Define it (Admin -> Connections, or AIRFLOW_CONN_{conn_id.upper()}), or name another one in "
            f"the URI ({protocol}://<conn_id>@bucket/key) or in [mlops] storage_conn_id."
        ) from err
    try:
        fs = ObjectStoragePath(f"{protocol}://{conn_id}@mlops-probe/").fs
    except ValueError as err:
        hint = " (pip install 'airflow-mlops[s3]')" if protocol in {"s3", "s3a"} else ""
        raise MlopsConfigError(
            f"no installed Airflow provider serves {protocol}:// URIs with a connection{hint}: {err}"
        ) from err
    except ImportError as err:
        raise MlopsConfigError(f"{protocol}:// storage needs a library that is not installed: {err}") from err
    _CONNECTION_FS[key] = fs
    return fs


def connection_env(uris: Iterable[str | None]) -> dict[str, str]:
    """
    ``AIRFLOW_CONN_<ID>`` (Airflow's JSON form) of every storage connection ``uris`` are opened with, for a
    child process of the task (the local training process) that cannot ask the Airflow API for connections.
    Nothing for local URIs or ambient credentials.
    """
    from airflow.sdk import BaseHook

    env: dict[str, str] = {}
    for uri in uris:
        if not uri:
            continue
        conn_id = storage_conn_id(uri)
        name = f"AIRFLOW_CONN_{(conn_id or '').upper()}"
        if conn_id is None or name in env:
            continue
        env[name] = BaseHook.get_connection(conn_id).as_json()
    return env


def _is_local_fs(fs: AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def is_local(uri: str) -> bool:
    return not _has_scheme(uri) or uri.startswith("file://")


def local_path(uri: str) -> str:
    """The absolute local path of a local URI (``file://`` or plain path)."""
    uri = check_uri(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return os.path.abspath(os.path.expanduser(uri))


_UNSAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._=+-]+")


def safe_segment(text: str) -> str:
    """``text`` as one safe path segment: runs of other characters become ``_`` (``manual__2026-12-02T10:00``
    -> ``manual__2026-12-02T10_00``); never empty, never ``.`` or ``..``."""
    return _UNSAFE_SEGMENT.sub("_", str(text)).strip("_.") or "x"


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a URI or path without touching its scheme; every part is checked for ``..``."""
    base = check_uri(base).rstrip("/")
    clean = [check_uri(str(p), what="path part").strip("/") for p in parts if str(p).strip("/")]
    if not clean:
        return base
    return posixpath.join(base, *clean) if _has_scheme(base) else os.path.join(base, *clean)


def to_uri(fs: AbstractFileSystem, path: str) -> str:
    """The full URI of an fsspec path (``fs.unstrip_protocol`` minus the ``file://`` of local paths)."""
    uri: str = fs.unstrip_protocol(path)
    return uri[len("file://") :] if uri.startswith("file://") else uri


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return bool(fs.exists(path))


def _tmp_sibling(path: str) -> str:
    head, tail = posixpath.split(path)
    return posixpath.join(head, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{tail}")


@contextlib.contextmanager
def atomic_write(uri: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """
    Open ``uri`` for writing so that it appears complete or not at all.

    Locally the data goes to a hidden sibling that is renamed into place on a clean exit; on an exception the
    sibling is removed and the target is untouched. On object stores the data is staged in a local temporary
    file and sent in one upload (a single or multipart PUT appears whole or not at all), so no temporary object
    is ever created in the bucket for a concurrent writer's clean-up to trip over.
    """
    if mode not in {"wb", "w"}:
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    fs, path = get_fs(uri)
    if not _is_local_fs(fs):
        with tempfile.TemporaryDirectory(prefix="mlops-") as tmpdir:
            staged = os.path.join(tmpdir, "payload")
            encoding = "utf-8" if mode == "w" else None
            with open(staged, mode, encoding=encoding) as handle:
                yield handle
            fs.put_file(staged, path)
        return
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with fs.open(tmp, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


@contextlib.contextmanager
def exclusive(uri: str, *, on_wait: Callable[[str], None] | None = None, poll: float = 0.2) -> Iterator[None]:
    """
    Hold the writer's lock of ``uri``: one writer at a time per output, across processes and machines that
    share the (local or network) filesystem.

    The lock is ``flock`` on the hidden sibling ``.mlops-lock-<name>``; the kernel releases it when its holder
    dies (even by SIGKILL), and the holder deletes the file on its way out (a waiter that locked a deleted
    file notices the inode changed and tries again), so nothing outlives the next writer. ``on_wait(lock)`` is
    called when the lock is busy and every 30 s while waiting. On object stores this is a no-op: writes there
    are single uploads (see :func:`atomic_write`).
    """
    if not is_local(uri):
        yield
        return
    import fcntl

    folder, name = os.path.split(local_path(uri))
    os.makedirs(folder, exist_ok=True)
    lock = os.path.join(folder, f"{LOCK_PREFIX}{name}")
    told = None
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            now = time.monotonic()
            if on_wait is not None and (told is None or now - told >= 30):
                told = now
                on_wait(lock)
            time.sleep(poll)
            continue
        try:
            mine = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            mine = False
        if mine:
            break
        os.close(fd)  # the holder deleted the file between our open and our lock: take the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def atomic_local_path(uri: str, suffix: str = "") -> Iterator[str]:
    """
    Yield a local file path to write with any library; on a clean exit it is published to ``uri`` atomically.

    For a local target the temporary file sits next to it (same filesystem, so ``os.replace`` is atomic);
    for a remote one it is a local temp file sent in one upload.
    """
    if is_local(uri):
        target = local_path(uri)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=os.path.dirname(target) or ".")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; published files get the usual mode
        try:
            yield tmp
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    fs, path = get_fs(uri)
    with tempfile.TemporaryDirectory(prefix="mlops-") as tmpdir:
        tmp = os.path.join(tmpdir, "payload" + suffix)
        yield tmp
        fs.put_file(tmp, path)  # one upload: appears whole or not at all


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes(uri: str, data: bytes) -> str:
    with atomic_write(uri) as handle:
        handle.write(data)
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, payload: Any) -> str:
    """Write ``payload`` as pretty JSON atomically (numpy scalars and other objects via ``str``)."""
    return write_text(uri, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as handle:
        data: bytes = handle.read()
    return data


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri).decode("utf-8"))


def remove(uri: str, *, recursive: bool = False) -> None:
    """Delete ``uri`` if it exists (used to roll back outputs of a failed attempt)."""
    fs, path = get_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)
