"""Owner records of stored reports: which DAG task wrote which report files, read by the report viewer.

The validation and drift operators write ``.mlops-owner.json`` in the folder of the reports they wrote, with
the dag_id, run_id, task_id and map_index of the task and the SHA-256 of every file. The viewer
(:mod:`airflow_mlops.plugins.api`) serves a file only when that record lists it with the same digest, and
only to users whom the auth manager lets read that DAG, so the DAG never comes from the request. A record is
as trustworthy as the storage: DAG code (which can write under ``report_base_uri``) could forge one, UI and
API users cannot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import storage

if TYPE_CHECKING:
    from airflow_mlops.core.lineage import AirflowIdentity

OWNER_NAME = ".mlops-owner.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReportOwner:
    """The task that wrote a report folder, and the files it wrote there (name -> SHA-256)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    files: Mapping[str, str] = field(default_factory=dict)
    # HTML files that only render with their own inline scripts (Evidently); others are served script-free.
    scripts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "files": dict(self.files),
            "scripts": list(self.scripts),
        }

    @classmethod
    def from_dict(cls, payload: Any) -> ReportOwner:
        """Parse a record; ValueError when it is not one (so the viewer refuses the folder)."""
        if not isinstance(payload, Mapping):
            raise ValueError("the owner record is not a JSON object")
        dag_id = payload.get("dag_id")
        files = payload.get("files")
        if not isinstance(dag_id, str) or not dag_id:
            raise ValueError("the owner record has no dag_id")
        if not isinstance(files, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ValueError("the owner record has no files map")
        scripts = payload.get("scripts") or []
        if not isinstance(scripts, list) or not all(isinstance(s, str) for s in scripts):
            raise ValueError("the owner record's scripts is not a list of file names")
        return cls(
            dag_id=dag_id,
            run_id=str(payload.get("run_id", "")),
            task_id=str(payload.get("task_id", "")),
            map_index=int(payload.get("map_index", -1)),
            files=dict(files),
            scripts=tuple(scripts),
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_uri(uri: str) -> tuple[str, str]:
    """``(folder, file name)`` of a report file URI (``/`` separated for local paths and object stores)."""
    folder, _, name = storage.check_uri(uri, what="report URI").rstrip("/").rpartition("/")
    return folder, name


def write_owner(identity: AirflowIdentity, file_uris: Sequence[str], *, scripts: Sequence[str] = ()) -> str:
    """
    Record that ``identity``'s task wrote ``file_uris`` (one folder) and return the record's URI.

    Call it after the reports are complete: the digests are of the bytes now stored. ``scripts`` names the
    HTML files among them that need their inline scripts to render.
    """
    if not file_uris:
        raise ValueError("write_owner needs at least one report file")
    folders = {split_uri(uri)[0] for uri in file_uris}
    if len(folders) != 1:
        raise ValueError(f"report files {list(file_uris)} are not in one folder")
    folder = folders.pop()
    files = {split_uri(uri)[1]: sha256(storage.read_bytes(uri)) for uri in file_uris}
    unknown = set(scripts) - set(files)
    if unknown:
        raise ValueError(f"scripts {sorted(unknown)} are not among the report files {sorted(files)}")
    owner = ReportOwner(
        dag_id=identity.dag_id,
        run_id=identity.run_id,
        task_id=identity.task_id,
        map_index=identity.map_index,
        files=files,
        scripts=tuple(scripts),
    )
    return storage.write_json(f"{folder}/{OWNER_NAME}", owner.to_dict())


def read_owner(folder_uri: str) -> ReportOwner | None:
    """The owner record of a report folder; None when there is none; ValueError when it is malformed."""
    try:
        payload = storage.read_json(f"{folder_uri.rstrip('/')}/{OWNER_NAME}")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as err:
        raise ValueError(f"the owner record is not UTF-8 JSON: {err}") from None
    return ReportOwner.from_dict(payload)
