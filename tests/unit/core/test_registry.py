"""Pure parts of core/registry.py: gate rules, their evaluation, alias history and argument checks."""

from __future__ import annotations

import json

import pytest

from airflow_mlops.core.aliases import AliasEvent, alias_history_from_tags, previous_version
from airflow_mlops.core.gate import GateRule, evaluate_rules, missing_metrics, parse_rules
from airflow_mlops.core.registration import registration_key
from airflow_mlops.core.registry import check_alias, check_version
from airflow_mlops.core.tags import HISTORY_TAG_PREFIX
from airflow_mlops.exceptions import GateRuleError, MlopsConfigError


# ---------------------------------------------------------------- rules
def test_parse_rules_accepts_list_mapping_and_json():
    rules = parse_rules(
        [
            {"metric": "val_auc", "min_delta": 0.002, "greater_is_better": True},
            {"metric": "val_auc", "min": 0.8},
        ]
    )
    assert rules == [GateRule("val_auc", min_delta=0.002), GateRule("val_auc", min=0.8)]
    assert parse_rules({"metric": "val_rmse", "max": 3}) == [GateRule("val_rmse", max=3.0)]
    assert parse_rules('[{"metric": "val_f1", "min": 0.5}]') == [GateRule("val_f1", min=0.5)]
    assert parse_rules(None) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"metric": "val_auc", "min_delta": "0.1"}], "'min_delta' must be a finite number"),
        ([{"metric": "val_auc", "min": float("nan")}], "'min' must be a finite number"),
        ([{"metric": "val_auc", "min": True}], "'min' must be a finite number"),
        ([{"metric": "val_auc"}], "checks nothing"),
        ([{"min": 0.5}], "needs 'metric'"),
        ([{"metric": "val_auc", "mn": 0.5}], "unknown keys ['mn']"),
        ([{"metric": "val_auc", "min_delta": 0, "greater_is_better": "yes"}], "must be true or false"),
        ([{"metric": "val_auc", "min": 0.9, "max": 0.1}], "'min' 0.9 is above 'max' 0.1"),
        (["val_auc > 0.8"], "must be a mapping"),
        ("{not json", "not valid JSON"),
        (42, "must be a list"),
    ],
)
def test_malformed_rules_name_the_problem(rules, message):
    with pytest.raises(GateRuleError) as info:
        parse_rules(rules)
    assert message in str(info.value)


def test_rule_number_is_in_the_message():
    with pytest.raises(GateRuleError, match="gate rule #2"):
        parse_rules([{"metric": "a", "min": 0}, {"metric": "b"}])


def test_first_model_passes_floors_and_skips_comparison():
    rules = parse_rules([{"metric": "auc", "min_delta": 0.01}, {"metric": "auc", "min": 0.8}])
    passed, reasons = evaluate_rules(rules, {"auc": 0.85}, None, candidate_version="1")
    assert passed
    assert any("no current champion" in r for r in reasons)
    assert any("min 0.8: pass" in r for r in reasons)
    failed, reasons = evaluate_rules(rules, {"auc": 0.7}, None, candidate_version="1")
    assert not failed and any("< min 0.8: fail" in r for r in reasons)


def test_min_delta_greater_and_lower_is_better():
    better = parse_rules([{"metric": "auc", "min_delta": 0.002}])
    assert evaluate_rules(better, {"auc": 0.905}, {"auc": 0.9}, champion_version="1")[0]
    passed, reasons = evaluate_rules(better, {"auc": 0.901}, {"auc": 0.9}, champion_version="1")
    assert not passed and "champion v1" in reasons[0] and reasons[0].endswith("fail")
    lower = parse_rules([{"metric": "rmse", "min_delta": 0.1, "greater_is_better": False}])
    assert evaluate_rules(lower, {"rmse": 1.0}, {"rmse": 1.2})[0]
    assert not evaluate_rules(lower, {"rmse": 1.15}, {"rmse": 1.2})[0]
    tolerant = parse_rules([{"metric": "auc", "min_delta": -0.01}])  # allow a small regression
    assert evaluate_rules(tolerant, {"auc": 0.895}, {"auc": 0.9})[0]


def test_max_ceiling_nan_and_champion_without_metric():
    rules = parse_rules([{"metric": "latency", "max": 20}, {"metric": "auc", "min_delta": 0}])
    assert not evaluate_rules(rules, {"latency": 25, "auc": 0.9}, {"auc": 0.8})[0]
    assert not evaluate_rules(rules, {"latency": float("nan"), "auc": 0.9}, {"auc": 0.8})[0]
    passed, reasons = evaluate_rules(rules, {"latency": 10, "auc": 0.9}, {}, champion_version="3")
    assert passed and any("champion v3 has no value: comparison skipped" in r for r in reasons)


def test_missing_metrics():
    rules = parse_rules([{"metric": "auc", "min": 0}, {"metric": "f1", "min": 0}])
    assert missing_metrics(rules, {"auc": 1.0}) == ["f1"]


# ---------------------------------------------------------------- history
def _event(seq, alias, frm, to, action):
    return AliasEvent(seq=seq, alias=alias, from_version=frm, to_version=to, action=action, at="t")


def test_previous_version_walks_back_like_an_undo_stack():
    events = [
        _event(1, "champion", None, "1", "promote"),
        _event(2, "champion", "1", "2", "promote"),
        _event(3, "champion", "2", "3", "promote"),
        _event(4, "staging", "9", "3", "set"),
    ]
    assert previous_version(events, "champion", "3") == "2"
    events.append(_event(5, "champion", "3", "2", "rollback"))
    assert previous_version(events, "champion", "2") == "1"  # two rollbacks go two steps back
    events.append(_event(6, "champion", "2", "1", "rollback"))
    assert previous_version(events, "champion", "1") is None
    assert previous_version(events, "staging", "3") == "9"


def test_history_tags_round_trip_and_foreign_tags_are_ignored():
    payload = {"alias": "champion", "from": None, "to": "2", "action": "promote", "at": "now", "reason": "r"}
    tags = {
        f"{HISTORY_TAG_PREFIX}000002": json.dumps(payload),
        f"{HISTORY_TAG_PREFIX}000001": json.dumps({**payload, "to": "1"}),
        f"{HISTORY_TAG_PREFIX}garbage": "x",
        f"{HISTORY_TAG_PREFIX}000003": "not json",
        "owner": "team",
    }
    events = alias_history_from_tags(tags)
    assert [(e.seq, e.to_version, e.from_version) for e in events] == [(1, "1", None), (2, "2", None)]
    assert events[1].to_dict()["reason"] == "r"


# ---------------------------------------------------------------- argument checks
def test_check_version_and_alias():
    assert check_version(3) == "3" and check_version("v7") == "7" and check_version(" 12 ") == "12"
    for bad in ("", "abc", 0, -1, None, True, "1.5"):
        with pytest.raises(MlopsConfigError, match="positive model version"):
            check_version(bad)
    assert check_alias("champion") == "champion"
    for bad in ("has space", "", "a.b"):
        with pytest.raises(MlopsConfigError, match="not a valid MLflow alias"):
            check_alias(bad)
    for reserved in ("latest", "v3"):
        with pytest.raises(MlopsConfigError, match="reserved"):
            check_alias(reserved)


def test_registration_key_depends_on_name_key_and_source():
    base = registration_key("m", "dag/run/task/-1", "models:/m-1")
    assert base == registration_key("m", "dag/run/task/-1", "models:/m-1")
    assert base.startswith("sha256:")
    assert len({base, registration_key("n", "dag/run/task/-1", "models:/m-1"),
                registration_key("m", "dag/run/task/0", "models:/m-1"),
                registration_key("m", "dag/run/task/-1", "models:/m-2")}) == 4  # fmt: skip


def test_a_failed_log_model_attempt_does_not_shadow_the_ready_model():
    """A trainer that retries log_model (skops -> cloudpickle) leaves a FAILED logged model first."""
    from types import SimpleNamespace

    from airflow_mlops.core.registration import _prefer_ready

    failed = SimpleNamespace(model_id="m-1", status="FAILED", name="model")
    ready = SimpleNamespace(model_id="m-2", status="READY", name="model")
    assert _prefer_ready([failed, ready]) is ready
    assert _prefer_ready([ready, failed]) is ready
    assert _prefer_ready([failed]) is failed  # then the READY check names the problem


# ---------------------------------------------------------------- layout
def test_names_moved_to_gate_and_aliases_stay_importable_from_registry():
    """core.registry kept its public names when registration, the gate and the alias history moved out (no cycle)."""
    import importlib

    from airflow_mlops.core import aliases, gate, registration, registry
    from airflow_mlops.core.registry import promote_if_better, register_model_version, set_alias

    assert promote_if_better is gate.promote_if_better and set_alias is aliases.set_alias
    assert register_model_version is registration.register_model_version
    for module, names in registry._MOVED.items():
        target = importlib.import_module(module)
        assert all(getattr(registry, n) is getattr(target, n) for n in names)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        registry.nope  # noqa: B018
