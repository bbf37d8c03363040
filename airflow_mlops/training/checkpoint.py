"""Training checkpoints (torch is imported only when one is read or written): one file per training, replaced atomically after every epoch.

A checkpoint is a plain ``torch.save`` dict (tensors, numbers, strings, lists) loaded with
``weights_only=True``. It records whose it is (task instance key, spec hash, data fingerprint) so a
checkpoint left by another DAG run, another spec or other data is never resumed by mistake.
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

from airflow_mlops.core.storage import atomic_local_path, get_fs
from airflow_mlops.exceptions import TrainingFailed

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def spec_hash(spec_json: str) -> str:
    return hashlib.sha256(spec_json.encode("utf-8")).hexdigest()[:16]


def save_checkpoint(uri: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``uri`` so that readers see the previous or the new checkpoint, never a torn one."""
    import torch

    with atomic_local_path(uri, suffix=".pt") as tmp:
        torch.save({"format": FORMAT_VERSION, **payload}, tmp)


def load_checkpoint(uri: str) -> dict[str, Any] | None:
    """The checkpoint at ``uri``, or None when there is none."""
    import torch

    fs, path = get_fs(uri)
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "rb") as handle:
            data = handle.read()
        payload: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint becomes one TrainingFailed with the fix
        raise TrainingFailed(
            f"checkpoint {uri} cannot be read ({type(err).__name__}: {str(err)[:200]}). Delete it to start the "
            "training over, or point checkpoint_uri elsewhere."
        ) from None
    if payload.get("format") != FORMAT_VERSION:
        log.warning(
            "Ignoring checkpoint %s of format %s (expected %s)", uri, payload.get("format"), FORMAT_VERSION
        )
        return None
    return payload


def matching_checkpoint(
    uri: str | None, *, ti_key: str, spec_digest: str, fingerprint: str
) -> dict[str, Any] | None:
    """The checkpoint at ``uri`` if it belongs to this task instance, spec and data; else None (with why)."""
    if not uri:
        return None
    payload = load_checkpoint(uri)
    if payload is None:
        return None
    mismatch = [
        name
        for name, want in (
            ("task instance", ti_key),
            ("spec", spec_digest),
            ("data fingerprint", fingerprint),
        )
        if payload.get(
            {"task instance": "ti_key", "spec": "spec_hash", "data fingerprint": "fingerprint"}[name]
        )
        != want
    ]
    if mismatch:
        log.warning(
            "Checkpoint %s belongs to a different %s; starting over and replacing it",
            uri,
            " and ".join(mismatch),
        )
        return None
    return payload
