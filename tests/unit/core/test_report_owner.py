"""Owner records of report folders: what the operators write and the report viewer trusts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.core import storage
from airflow_mlops.core.lineage import AirflowIdentity
from airflow_mlops.core.report_owner import OWNER_NAME, read_owner, sha256, split_uri, write_owner

IDENTITY = AirflowIdentity(dag_id="dag_a", run_id="manual__1", task_id="validate", map_index=2)


def test_write_then_read_records_the_task_and_the_digest_of_every_file(tmp_path: Path):
    html, data = tmp_path / "report.html", tmp_path / "report.json"
    html.write_text("<p>ok</p>")
    data.write_text("{}")
    uri = write_owner(IDENTITY, [str(html), str(data)], scripts=["report.html"])
    assert uri == f"{tmp_path}/{OWNER_NAME}"

    owner = read_owner(str(tmp_path))
    assert owner is not None
    assert (owner.dag_id, owner.run_id, owner.task_id, owner.map_index) == (
        "dag_a",
        "manual__1",
        "validate",
        2,
    )
    assert owner.files == {"report.html": sha256(b"<p>ok</p>"), "report.json": sha256(b"{}")}
    assert owner.scripts == ("report.html",)


def test_object_store_uris_work_the_same(tmp_path: Path):
    storage.write_text("memory://report-owner-test/x/drift.html", "<html></html>")
    write_owner(IDENTITY, ["memory://report-owner-test/x/drift.html"])
    assert split_uri("memory://report-owner-test/x/drift.html") == (
        "memory://report-owner-test/x",
        "drift.html",
    )
    owner = read_owner("memory://report-owner-test/x")
    assert owner is not None and list(owner.files) == ["drift.html"] and owner.scripts == ()


def test_bad_calls_are_refused(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "r.html").write_text("x")
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ValueError, match="not in one folder"):
        write_owner(IDENTITY, [str(tmp_path / "a" / "r.html"), str(tmp_path / "r.json")])
    with pytest.raises(ValueError, match="not among the report files"):
        write_owner(IDENTITY, [str(tmp_path / "r.json")], scripts=["other.html"])
    with pytest.raises(ValueError, match="at least one"):
        write_owner(IDENTITY, [])


def test_a_folder_without_a_record_has_no_owner_and_a_malformed_record_is_an_error(tmp_path: Path):
    assert read_owner(str(tmp_path)) is None
    for bad in ("not json", "[]", json.dumps({"files": {}}), json.dumps({"dag_id": "d", "files": ["a"]})):
        (tmp_path / OWNER_NAME).write_text(bad)
        with pytest.raises(ValueError):
            read_owner(str(tmp_path))
