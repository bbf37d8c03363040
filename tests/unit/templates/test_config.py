from __future__ import annotations

import dataclasses

import pytest

from airflow_mlops.exceptions import TemplateConfigError
from airflow_mlops.templates.config import LifecycleConfig

BASE = {
    "model_name": "churn",
    "data": {"train_uri": "/data/train.parquet"},
    "training": {
        "spec": {
            "target": "y",
            "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
        }
    },
}


def test_minimal_config_gets_defaults():
    cfg = LifecycleConfig.from_dict(BASE)
    assert cfg.experiment_name == "churn"
    assert cfg.training.backend == "local"
    assert cfg.drift.drift_share == 0.5 and cfg.drift.policy.persistence == 1
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
        ({"drift": {"drift_share": 1.5}}, r"drift.drift_share: must be in \(0, 1\]"),
        (
            {"drift": {"threshold": 0.3, "drift_share": 0.3}},
            r"drift.threshold: is the older name of 'drift_share'",
        ),
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
    good.write_text(
        "model_name: churn\ndata: {train_uri: /x}\ntraining: {spec: {target: y, model: torch_mlp}}\n"
    )
    assert LifecycleConfig.from_yaml(good).source == str(good)


# ------------------------------------------------------------------ training.spec and gate checked at load
YAML_BASE = """\
model_name: churn
data: {train_uri: /data/train.parquet}
training:
  spec:
    target: churned
    model: {family: sklearn, estimator: sklearn.ensemble.HistGradientBoostingClassifier}
"""


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        (
            YAML_BASE.replace("target: churned", "targt: churned"),
            r"training\.spec\.targt: unknown key 'targt'\. Did you mean 'target'\?",
        ),
        (
            YAML_BASE.replace("estimator:", "estimatr:"),
            r"training\.spec\.model\.estimatr: unknown key 'estimatr'\. Did you mean 'estimator'\?",
        ),
        (
            YAML_BASE.replace(
                "model: {family: sklearn, estimator: sklearn.ensemble.HistGradientBoostingClassifier}",
                "model: {family: torch_mlp, params: {epocs: 3}}",
            ),
            r"training\.spec\.model\.params\.epocs: unknown key 'epocs'\. Did you mean 'epochs'\?",
        ),
        (
            YAML_BASE + "    metrics: [roc_auc, rmse]\n",
            r"training\.spec\.metrics: metrics .* mix classification and regression",
        ),
        (
            YAML_BASE + "    validation_fraction: 2\n",
            r"training\.spec\.validation_fraction: training spec field 'validation_fraction'=2 must be between",
        ),
        (
            YAML_BASE + "gate:\n  floors:\n    - {metric: val_roc_auc, mn: 0.7}\n",
            r"gate\.floors\[0\]\.mn: unknown key 'mn'\. Did you mean 'min'\?",
        ),
        (
            YAML_BASE + "gate:\n  rules:\n    - {metric: val_roc_auc}\n",
            r"gate\.rules\[0\]: gate rule #1 \(val_roc_auc\) checks nothing",
        ),
        (
            YAML_BASE.replace("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
            + "gate:\n  floors:\n    - {metric: val_roc_auc, min: 0.7}\n",
            r"gate\.floors\[0\]\.metric: .*'val_roc_auc'.* regression model that logs \['val_mae', 'val_r2', "
            r"'val_rmse'\]",
        ),
        (
            YAML_BASE + "    metrics: [accuracy]\n",
            r"gate: no gate: section, so the default gate applies, and it needs metric 'val_roc_auc'",
        ),
    ],
)
def test_spec_and_gate_typos_are_import_errors_naming_file_and_field(tmp_path, yaml_text, match):
    path = tmp_path / "churn.yaml"
    path.write_text(yaml_text)
    with pytest.raises(TemplateConfigError, match=rf"^{path}: {match}"):
        LifecycleConfig.from_yaml(path)


def test_templated_spec_values_are_left_to_run_time(tmp_path):
    path = tmp_path / "churn.yaml"
    path.write_text(
        YAML_BASE.replace("target: churned", "target: churned\n    checkpoint_uri: 's3://ckpt/{{ run_id }}'")
    )
    assert LifecycleConfig.from_yaml(path).training.spec["checkpoint_uri"] == "s3://ckpt/{{ run_id }}"


def test_default_gate_by_task():
    from airflow_mlops.core.gate import default_gate_rules

    assert default_gate_rules("classification") == [
        {"metric": "val_roc_auc", "min_delta": 0.0, "greater_is_better": True},
        {"metric": "val_roc_auc", "min": 0.65},
    ]
    assert default_gate_rules("regression") == [
        {"metric": "val_rmse", "min_delta": 0.0, "greater_is_better": False},
        {"metric": "val_r2", "min": 0.0},
    ]
    # Without a gate: section the gate applies the default of the task the trainer records on the run ...
    for model in ("sklearn.linear_model.Ridge", "torch_mlp", "sklearn.linear_model.LogisticRegression"):
        cfg = LifecycleConfig.from_dict({**BASE, "training": {"spec": {"target": "y", "model": model}}})
        assert cfg.gate.is_default and cfg.gate_rules() == "default"
    # ... and an explicit empty gate promotes every candidate.
    assert LifecycleConfig.from_dict({**BASE, "gate": {"rules": [], "floors": []}}).gate_rules() == []


def test_templates_in_fields_that_render_as_text_only_are_rejected(tmp_path):
    path = tmp_path / "churn.yaml"
    path.write_text(
        YAML_BASE.replace("estimator: sklearn", "params: {max_iter: '{{ params.n }}'}, estimator: sklearn")
    )
    with pytest.raises(
        TemplateConfigError, match=r"training\.spec\.model\.params\.max_iter: .* hyperparameters"
    ):
        LifecycleConfig.from_yaml(path)
    path.write_text(YAML_BASE + "    metrics: '{{ params.metric }}'\n")
    with pytest.raises(
        TemplateConfigError, match=r"training\.spec\.metrics: '\{\{ params.metric \}\}' is a template"
    ):
        LifecycleConfig.from_yaml(path)


def test_gate_rule_objects_become_plain_rules():
    from airflow_mlops.core.gate import GateRule

    cfg = LifecycleConfig.from_dict(BASE)
    gate = dataclasses.replace(cfg.gate, rules=[GateRule("val_roc_auc", min_delta=0.0)], floors=[])
    cfg = dataclasses.replace(cfg, gate=gate)
    assert cfg.gate_rules() == [{"metric": "val_roc_auc", "min_delta": 0.0, "greater_is_better": True}]


def test_renamed_keys_still_read_under_their_older_names():
    """One vocabulary (drift_share, cpu, memory, on_reject: warn); YAML written with the older keys still loads."""
    from airflow_mlops.operators.common import OnFailure

    old = LifecycleConfig.from_dict(
        {
            **BASE,
            "drift": {"threshold": 0.3},
            "gate": {"on_reject": "succeed"},
            "training": {**BASE["training"], "kubernetes": {"cpu_request": "4", "memory_request": "16Gi"}},
        }
    )
    assert old.drift.drift_share == 0.3
    assert (old.training.kubernetes.cpu, old.training.kubernetes.memory) == ("4", "16Gi")
    assert OnFailure(old.gate.on_reject) is OnFailure.WARN


def test_inference_backend_spark_builds_the_spark_operator():
    from airflow_mlops.operators.spark import SparkBatchInferenceOperator
    from airflow_mlops.templates.builders import build_inference_dag

    cfg = LifecycleConfig.from_dict(
        {
            **BASE,
            "inference": {
                "input_uri": "/in/",
                "output_uri": "/out/{{ run_id }}.parquet",
                "passthrough_columns": ["id"],
                "batch_size": 5000,
                "backend": "spark",
                "spark": {
                    "conn_id": "spark_yarn",
                    "conf": {"spark.executor.instances": 4},
                    "executor_memory": "8g",
                },
            },
        }
    )
    dag = build_inference_dag(cfg)
    score = dag.get_task("inference.score")
    assert isinstance(score, SparkBatchInferenceOperator)
    assert score.spark_conn_id == "spark_yarn" and score.executor_memory == "8g"
    assert score.conf == {
        "spark.executor.instances": 4,
        "spark.sql.execution.arrow.maxRecordsPerBatch": "5000",
    }
    assert score.passthrough_columns == ["id"] and score.model_uri.startswith("models:/churn@")
    with pytest.raises(TemplateConfigError, match=r"inference.backend: must be one of \['local', 'spark'\]"):
        LifecycleConfig.from_dict(
            {**BASE, "inference": {"input_uri": "/in", "output_uri": "/o", "backend": "dask"}}
        )
    with pytest.raises(TemplateConfigError, match=r"inference.spark: unknown key\(s\) \['connid'\]"):
        LifecycleConfig.from_dict(
            {**BASE, "inference": {"input_uri": "/in", "output_uri": "/o", "spark": {"connid": "x"}}}
        )


def test_gate_approval_required_adds_the_approval_step_after_the_rules():
    from datetime import timedelta

    from airflow_mlops.operators.approval import MlflowApproveModelOperator
    from airflow_mlops.templates.builders import build_training_dag

    gate = {"rules": [{"metric": "val_roc_auc", "min_delta": 0.0}], "approval": "required",
            "approval_timeout_hours": 4, "approvers": ["alice", "bob"]}  # fmt: skip
    dag = build_training_dag(LifecycleConfig.from_dict({**BASE, "gate": gate}))
    promote, approve = dag.get_task("training.promote"), dag.get_task("training.approve")
    assert promote.require_approval and isinstance(approve, MlflowApproveModelOperator)
    assert approve.upstream_task_ids == {"training.promote"}
    assert dag.get_task("training.decided").upstream_task_ids >= {
        "training.approve",
        "training.force_promote",
    }
    assert approve.response_timeout == timedelta(hours=4) and approve.defaults == ["Reject"]
    assert [u["id"] for u in approve.assigned_users] == ["alice", "bob"]
    assert approve.rules == promote.rules and approve.on_reject.value == "warn"
    assert list(approve.serialized_params) == ["reason"], (
        "the form asks for a reason, not the DAG's run params"
    )

    plain = build_training_dag(LifecycleConfig.from_dict(BASE))
    assert not plain.get_task("training.promote").require_approval
    assert "training.approve" not in plain.task_ids


@pytest.mark.parametrize(
    ("gate", "match"),
    [
        ({"approval": "maybe"}, r"gate.approval: must be one of \['none', 'required'\]"),
        ({"approval": "required", "approval_timeout_hours": 0}, r"gate.approval_timeout_hours: 0"),
        ({"approval": "required", "approvers": ["alice", ""]}, r"gate.approvers\[1\]: '' is not a user id"),
    ],
)
def test_gate_approval_mistakes_name_the_field(gate, match):
    with pytest.raises(TemplateConfigError, match=match):
        LifecycleConfig.from_dict({**BASE, "gate": gate})
