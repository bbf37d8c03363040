from __future__ import annotations

import dataclasses

import pytest

from airflow_mlops.exceptions import TemplateConfigError
from airflow_mlops.templates.config import LifecycleConfig

BASE = {
    "model_name": "churn",
    "data": {"train_uri": "/data/train.parquet"},
    "training": {"spec": {"target": "y", "model": {"family": "sklearn"}}},
}


def test_minimal_config_gets_defaults():
    cfg = LifecycleConfig.from_dict(BASE)
    assert cfg.experiment_name == "churn"
    assert cfg.training.backend == "local"
    assert cfg.drift.threshold == 0.5 and cfg.drift.policy.persistence == 1
    assert not cfg.validation.enabled
    assert dataclasses.replace(cfg, model_name="other").model_name == "other"


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"modle_name": "x"}, r"unknown key\(s\) \['modle_name'\]"),
        ({"training": {"backend": "slurm"}}, r"training.backend: must be one of \['local', 'kubernetes'\]"),
        (
            {"training": {"kubernetes": {"gpu_count": "two"}}},
            r"training.kubernetes.gpu_count: expected an integer",
        ),
        ({"training": {"kubernetes": {"gpu_count": -1}}}, r"training.kubernetes.gpu_count: must be >= 0"),
        ({"drift": {"threshold": 1.5}}, r"drift.threshold: must be in \(0, 1\]"),
        ({"drift": {"policy": {"persistance": 2}}}, r"drift.policy: unknown key\(s\) \['persistance'\]"),
        ({"drift": {"policy": {"persistence": 0}}}, r"drift.policy: .*persistence=0 must be an integer >= 1"),
        ({"model_name": "bad name!"}, r"model_name: 'bad name!' is not a valid name"),
        ({"data": {}}, r"data.train_uri: is required"),
        ({"inference": {"input_uri": "/in"}}, r"inference.output_uri: is required"),
        ({"validation": {"on_failure": "explode"}}, r"validation.on_failure: must be one of"),
        ({"tags": "ml"}, r"tags: expected a list"),
    ],
)
def test_each_wrong_field_is_named(patch, match):
    raw = {**BASE, **patch}
    if "training" in patch:
        raw["training"] = {**BASE["training"], **patch["training"]}
    with pytest.raises(TemplateConfigError, match=match):
        LifecycleConfig.from_dict(raw)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name: churn\ndata: {train_uri: /x}\ntraining: {backend: nope}\n")
    with pytest.raises(TemplateConfigError, match=rf"{bad}: training.backend"):
        LifecycleConfig.from_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_name: [unclosed\n")
    with pytest.raises(TemplateConfigError, match=rf"{broken}: not valid YAML"):
        LifecycleConfig.from_yaml(broken)
    good = tmp_path / "good.yaml"
    good.write_text("model_name: churn\ndata: {train_uri: /x}\ntraining: {spec: {target: y}}\n")
    assert LifecycleConfig.from_yaml(good).source == str(good)
