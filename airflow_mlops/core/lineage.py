"""Lineage: dataset fingerprints and the Airflow identity that tie Airflow runs, data, MLflow runs and models.

The tag keys live in :mod:`airflow_mlops.core.tags`; every component (training, registry, scoring, drift) writes
and reads them through those names, so lineage can be walked backwards from a predictions manifest to the
training data.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.data import DatasetRef, resolve_dataset
from airflow_mlops.core.tags import (
    TAG_DAG_ID,
    TAG_MAP_INDEX,
    TAG_RUN_ID,
    TAG_TASK_ID,
    TAG_TI_KEY,
    TAG_TRY_NUMBER,
)
from airflow_mlops.exceptions import MlopsConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

FINGERPRINT_ALGORITHMS = ("xxh3", "sha256")
FINGERPRINT_ALGO = "xxh3"  # the default; ``[mlops] fingerprint_algorithm`` chooses
_CHUNK = 8 << 20
_cache: dict[tuple[Any, ...], str] = {}


@dataclass(frozen=True)
class AirflowIdentity:
    """The identity of the Airflow task instance that produced something."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int = 1
    map_index: int = -1

    @property
    def ti_key(self) -> str:
        """A key stable across tries of the same task instance (used for idempotency)."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}"

    def to_tags(self) -> dict[str, str]:
        return {
            TAG_DAG_ID: self.dag_id,
            TAG_RUN_ID: self.run_id,
            TAG_TASK_ID: self.task_id,
            TAG_TRY_NUMBER: str(self.try_number),
            TAG_MAP_INDEX: str(self.map_index),
            TAG_TI_KEY: self.ti_key,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> AirflowIdentity | None:
        if TAG_DAG_ID not in tags:
            return None
        return cls(
            dag_id=tags[TAG_DAG_ID],
            run_id=tags.get(TAG_RUN_ID, ""),
            task_id=tags.get(TAG_TASK_ID, ""),
            try_number=int(tags.get(TAG_TRY_NUMBER, "1") or 1),
            map_index=int(tags.get(TAG_MAP_INDEX, "-1") or -1),
        )


def _file_key(ref: DatasetRef, file: str) -> tuple[Any, ...]:
    info = ref.fs.info(file)
    return (file, info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag"))


def _hasher(algo: str) -> Any:
    if algo == "xxh3":
        import xxhash

        return xxhash.xxh3_128()
    if algo == "sha256":
        return hashlib.sha256()
    raise MlopsConfigError(
        f"unknown fingerprint algorithm {algo!r}; set [mlops] fingerprint_algorithm to one of "
        f"{', '.join(FINGERPRINT_ALGORITHMS)}."
    )


def default_algorithm() -> str:
    """``[mlops] fingerprint_algorithm`` (read from the environment where Airflow is not installed)."""
    try:
        from airflow_mlops.settings import get_settings

        algo = get_settings().fingerprint_algorithm
    except ImportError:  # a training image without Airflow
        algo = os.environ.get("AIRFLOW__MLOPS__FINGERPRINT_ALGORITHM", "")
    return algo.strip().lower() or FINGERPRINT_ALGO


def algorithm_of(value: str | None) -> str | None:
    """The algorithm a recorded fingerprint was computed with (``"xxh3:…"`` -> ``"xxh3"``), or None."""
    if not value or ":" not in value:
        return None
    algo = value.split(":", 1)[0]
    return algo if algo in FINGERPRINT_ALGORITHMS else None


def _file_digest(ref: DatasetRef, file: str, algo: str) -> bytes:
    """One file's digest, read in chunks into one reused buffer (no allocation per chunk)."""
    file_digest = _hasher(algo)
    view = memoryview(bytearray(_CHUNK))
    with ref.fs.open(file, "rb") as handle:
        readinto = getattr(handle, "readinto", None)
        if readinto is None:
            while chunk := handle.read(_CHUNK):
                file_digest.update(chunk)
        else:
            while n := readinto(view):
                file_digest.update(view[:n])
    return bytes(file_digest.digest())


def fingerprint(uri_or_ref: str | DatasetRef, *, algorithm: str | None = None) -> str:
    """
    Content hash of a dataset: ``<algorithm>:<hex>`` over its data files in sorted order with their names.

    The default algorithm is xxh3-128 (``[mlops] fingerprint_algorithm``): a content identity for retry skips
    and lineage that costs a small fraction of reading the data; ``sha256`` gives a cryptographic digest. To
    compare with a recorded fingerprint, pass ``algorithm=algorithm_of(recorded)`` so a value recorded under
    another setting is recomputed the same way.

    The same bytes give the same fingerprint wherever they are stored; a folder's hidden files are ignored.
    Computed once per process for unchanged files (keyed by path, size and modification time).
    """
    algo = (algorithm or default_algorithm()).lower()
    ref = uri_or_ref if isinstance(uri_or_ref, DatasetRef) else resolve_dataset(uri_or_ref)
    key = (algo, ref.path, tuple(_file_key(ref, f) for f in ref.files))
    cached = _cache.get(key)
    if cached:
        return cached
    digest = _hasher(algo)
    for file in ref.files:
        if ref.is_dir:
            digest.update(posixpath.relpath(file, ref.path).encode() + b"\0")
        digest.update(_file_digest(ref, file, algo))
    value = f"{algo}:{digest.hexdigest()}"
    _cache[key] = value
    return value


def same_content(recorded: str | None, uri_or_ref: str | DatasetRef) -> bool:
    """Whether ``uri_or_ref`` still holds the data ``recorded`` was computed from (in its own algorithm)."""
    algo = algorithm_of(recorded)
    return algo is not None and fingerprint(uri_or_ref, algorithm=algo) == recorded
