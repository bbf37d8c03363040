"""Sharded scoring: split a dataset folder into groups of files, one mapped task each, then combine the parts.

Every shard is pinned to the same concrete model version; :func:`combine_shards` checks each shard's manifest,
removes part files of an earlier plan and writes the folder's ``_manifest.json`` last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.core import data as data_mod
from airflow_mlops.core.scoring.manifest import (
    MANIFEST_FORMAT,
    manifest_uri_for,
    output_intact,
    read_manifest,
)
from airflow_mlops.core.storage import check_uri, get_fs, join_uri, to_uri, write_json
from airflow_mlops.exceptions import MlopsConfigError, ScoringError

if TYPE_CHECKING:
    from collections.abc import Sequence

COMBINED_MANIFEST_NAME = "_manifest.json"
PART_TEMPLATE = "part-{index:05d}.parquet"
_PART_RE = re.compile(r"^part-\d{5}\.parquet$")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a sharded scoring job: a group of input files and the part file it writes."""

    index: int
    model_uri: str
    input_uri: str
    input_files: list[str]
    output_uri: str

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BatchInferenceOperator.partial(...).expand_kwargs(...)``."""
        return {
            "model_uri": self.model_uri,
            "input_uri": self.input_uri,
            "input_files": list(self.input_files),
            "output_uri": self.output_uri,
        }


def plan_shards(
    input_uri: str, output_dir: str, *, model_uri: str, num_shards: int | None = None
) -> list[ShardSpec]:
    """
    Split a dataset folder into shards of consecutive files (one per file by default, at most ``num_shards``).

    ``model_uri`` should already be concrete (``models:/<name>/<version>``) so every shard scores with the same
    version even if an alias moves mid-run. Shard ``i`` writes ``<output_dir>/part-<i>.parquet``.
    """
    ref = data_mod.resolve_dataset(input_uri)
    if num_shards is not None and num_shards < 1:
        raise MlopsConfigError(f"num_shards must be at least 1, not {num_shards}.")
    rel = [posixpath.relpath(f, ref.path) for f in ref.files] if ref.is_dir else []
    if not ref.is_dir:
        groups: list[list[str]] = [[]]
    else:
        count = min(num_shards or len(rel), len(rel))
        size, extra = divmod(len(rel), count)
        groups, start = [], 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            groups.append(rel[start:end])
            start = end
    output_dir = check_uri(output_dir, what="output folder").rstrip("/")
    return [
        ShardSpec(
            index=i,
            model_uri=model_uri,
            input_uri=ref.uri,
            input_files=group,
            output_uri=join_uri(output_dir, PART_TEMPLATE.format(index=i)),
        )
        for i, group in enumerate(groups)
    ]


@dataclass
class CombinedResult:
    """The manifest of a sharded job's output folder."""

    output_uri: str
    manifest_uri: str
    model_name: str
    model_version: str
    model_run_id: str | None
    input_uri: str
    rows: int
    parts: list[dict[str, Any]]
    output_schema: list[dict[str, str]]
    removed_stray_parts: list[str]
    elapsed_s: float

    def manifest(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["manifest_format"] = MANIFEST_FORMAT
        body["kind"] = "predictions-combined"
        body["input_fingerprint"] = _combined_fingerprint(self.parts)
        return body

    def to_summary(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_run_id": self.model_run_id,
            "rows": self.rows,
            "output_uri": self.output_uri,
            "manifest_uri": self.manifest_uri,
            "parts": len(self.parts),
        }


def _combined_fingerprint(parts: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part.get("input_fingerprint")).encode() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def combine_shards(
    output_dir: str, shard_outputs: Sequence[str], *, log: logging.Logger | Any = None
) -> CombinedResult:
    """
    Check every shard's manifest (present, intact, same model version, same schema), remove part files no
    shard of this plan wrote, and write ``<output_dir>/_manifest.json`` last.
    """
    log = log or logger
    started = time.monotonic()
    output_dir = check_uri(output_dir, what="output folder").rstrip("/")
    if not shard_outputs:
        raise MlopsConfigError(f"no shard outputs to combine into {output_dir}; the plan produced no shards.")
    manifests = []
    for uri in shard_outputs:
        body = read_manifest(manifest_uri_for(uri))
        if body is None or not output_intact(body):
            raise ScoringError(
                f"shard output {uri} has no valid manifest; its scoring task did not finish. Re-run that shard."
            )
        manifests.append(body)
    versions = sorted({(m["model_name"], str(m["model_version"])) for m in manifests})
    if len(versions) != 1:
        raise ScoringError(
            f"the shards of {output_dir} were scored by different model versions {versions}; plan the shards "
            "with one concrete version (models:/<name>/<version>) and re-run them."
        )
    schemas = {json.dumps(m["output_schema"]) for m in manifests if m.get("output_written")}
    if len(schemas) > 1:
        raise ScoringError(f"the shards of {output_dir} have different output schemas; re-run the shards.")
    expected = {posixpath.basename(m["output_uri"]) for m in manifests}
    fs, path = get_fs(output_dir)
    stray = []
    for entry in fs.ls(path, detail=False) if fs.exists(path) else []:
        base = posixpath.basename(str(entry).rstrip("/"))
        parts_name = (
            base[1 : -len(".manifest.json")]
            if base.startswith("_") and base.endswith(".manifest.json")
            else base
        )
        if _PART_RE.match(parts_name) and parts_name not in expected:
            fs.rm(entry)
            stray.append(to_uri(fs, str(entry)))
    if stray:
        log.warning("Removed %d part file(s) of an earlier plan from %s: %s", len(stray), output_dir, stray)
    name, version = versions[0]
    result = CombinedResult(
        output_uri=output_dir,
        manifest_uri=join_uri(output_dir, COMBINED_MANIFEST_NAME),
        model_name=name,
        model_version=version,
        model_run_id=manifests[0].get("model_run_id"),
        input_uri=manifests[0].get("input_uri", ""),
        rows=sum(int(m.get("rows", 0)) for m in manifests),
        parts=[
            {
                "output_uri": m["output_uri"],
                "rows": m.get("rows", 0),
                "input_files": m.get("input_files"),
                "input_fingerprint": m.get("input_fingerprint"),
                "output_written": m.get("output_written"),
            }
            for m in manifests
        ],
        output_schema=next((m["output_schema"] for m in manifests if m.get("output_written")), []),
        removed_stray_parts=stray,
        elapsed_s=time.monotonic() - started,
    )
    write_json(result.manifest_uri, result.manifest())
    log.info("Combined %d shard(s), %d row(s) into %s", len(manifests), result.rows, output_dir)
    return result
