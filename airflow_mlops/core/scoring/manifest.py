"""The manifest that proves a predictions file complete, and the skip rule a retry or re-run applies with it.

A manifest (``_<file>.manifest.json`` beside the output) is written last and describes the file beside it: the
model version, the input fingerprint, rows, bytes and schema. A job whose manifest matches (same model version,
same input content, same options) and whose output is intact is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.storage import TMP_PREFIX, check_uri, get_fs, read_json, to_uri
from airflow_mlops.exceptions import MlopsConfigError

if TYPE_CHECKING:
    from airflow_mlops.core.scoring.refs import ModelRef

MANIFEST_FORMAT = 1

logger = logging.getLogger(__name__)


@dataclass
class ScoringResult:
    """What one scoring job produced (also the manifest's content)."""

    model_name: str
    model_version: str
    model_run_id: str | None
    model_uri: str
    requested_model_uri: str
    flavor: str | None
    input_uri: str
    input_files: list[str] | None
    input_fingerprint: str
    rows: int
    output_uri: str
    manifest_uri: str
    output_written: bool
    output_bytes: int
    output_schema: list[dict[str, str]]
    passthrough_columns: list[str]
    prediction_columns: list[str]
    prediction_column: str
    batch_size: int
    elapsed_s: float
    skipped: bool = False
    created_at: float = field(default_factory=time.time)
    engine: str = "local"  # "spark": output_uri is a folder of the part files listed in ``parts``
    parts: list[dict[str, Any]] | None = None

    def manifest(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body.pop("skipped")
        body["manifest_format"] = MANIFEST_FORMAT
        body["kind"] = "predictions"
        body["empty"] = self.rows == 0
        return body

    def to_summary(self) -> dict[str, Any]:
        """The small dict an operator returns as XCom."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "model_run_id": self.model_run_id,
            "rows": self.rows,
            "output_uri": self.output_uri,
            "manifest_uri": self.manifest_uri,
            "input_uri": self.input_uri,
            "input_fingerprint": self.input_fingerprint,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    @classmethod
    def from_manifest(cls, body: dict[str, Any], *, skipped: bool = False) -> ScoringResult:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in body.items() if k in names}
        values["skipped"] = skipped
        return cls(**values)


def manifest_uri_for(output_uri: str) -> str:
    """Where the manifest of ``output_uri`` lives: a hidden sibling ``_<file name>.manifest.json``."""
    output_uri = check_uri(output_uri, what="output URI").rstrip("/")
    head, _, tail = output_uri.rpartition("/")
    name = f"_{tail}.manifest.json"
    return f"{head}/{name}" if head else name


def check_output_uri(output_uri: str) -> str:
    output_uri = check_uri(output_uri, what="output URI")
    if output_uri.endswith("/") or not output_uri.lower().endswith(".parquet"):
        raise MlopsConfigError(
            f"output URI {output_uri!r} must name a .parquet file, e.g. s3://bucket/predictions/2026-11-01.parquet "
            "(to write a folder of parts, shard the job with plan_shards/combine_shards)."
        )
    return output_uri


def same_job(old: dict[str, Any], ref: ModelRef, fingerprint: str, params: dict[str, Any]) -> bool:
    if old.get("manifest_format") != MANIFEST_FORMAT or old.get("kind") != "predictions":
        return False
    if (old.get("model_name"), str(old.get("model_version"))) != (ref.name, ref.version):
        return False
    if old.get("input_fingerprint") != fingerprint:
        return False
    return all(old.get(k) == v for k, v in params.items())


def output_intact(old: dict[str, Any]) -> bool:
    """The output still is what the manifest describes: the file's size, or a folder's exact part files."""
    if not old.get("output_written"):
        return not _exists(old["output_uri"])
    if old.get("parts") is not None:
        from airflow_mlops.core.scoring.spark import folder_parts

        have = {p["path"]: p["bytes"] for p in folder_parts(old["output_uri"])}
        return bool(have) and have == {p.get("path"): p.get("bytes") for p in old["parts"]}
    fs, path = get_fs(old["output_uri"])
    try:
        return int(fs.info(path).get("size") or -1) == int(old.get("output_bytes", -2))
    except FileNotFoundError:
        return False


def _exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return bool(fs.exists(path))


def read_manifest(uri: str) -> dict[str, Any] | None:
    try:
        body = read_json(uri)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        logger.warning("Ignoring unreadable manifest %s; the job runs again and replaces it", uri)
        return None
    return body if isinstance(body, dict) else None


def remove_stale_temporaries(output_uri: str) -> list[str]:
    """Delete hidden temporary files a killed attempt left beside ``output_uri``; return their URIs."""
    fs, path = get_fs(output_uri)
    parent, name = posixpath.split(path)
    try:
        entries = fs.ls(parent, detail=False)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        base = posixpath.basename(str(entry).rstrip("/"))
        if base.startswith(TMP_PREFIX) and base.endswith((f"-{name}", f"-_{name}.manifest.json")):
            try:
                fs.rm(entry, recursive=True)  # a Spark job's staging folder, or a file
                removed.append(to_uri(fs, str(entry)))
            except FileNotFoundError:
                pass
    return removed
