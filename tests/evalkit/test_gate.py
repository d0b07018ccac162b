"""Gate rules: tolerances by model/runtime/precision, history drop and flips, bad input."""

from __future__ import annotations

import json

import pandas as pd

from evalkit import history
from evalkit.gate import GateConfig, Rule, gate, limits, load_config

from .test_history import make_runs


def test_later_rules_win_and_patterns_match():
    cfg = GateConfig(tolerance=0.2, rules=[Rule(runtime="trt", tolerance=0.5), Rule(runtime="trt", precision="int8", tolerance=1.0),
                                           Rule(model="vastai/*", max_flips=100)])
    assert limits(cfg, "cspresnext50", "ort", "fp32")["tolerance"] == 0.2
    assert limits(cfg, "cspresnext50", "trt", "fp16")["tolerance"] == 0.5
    assert limits(cfg, "cspresnext50", "trt", "int8")["tolerance"] == 1.0
    assert limits(cfg, "vastai/resnest50", "vamp", "fp32")["max_flips"] == 100


def test_default_config_loads_and_a_typo_is_refused(tmp_path):
    assert load_config(None).tolerance == 0.2
    bad = tmp_path / "gate.yaml"
    bad.write_text("tolerence: 0.3\n")
    try:
        load_config(bad)
    except Exception as e:
        assert "tolerence" in str(e)
    else:
        raise AssertionError("a misspelt key was accepted")


def test_history_drop_and_flips_fail_against_the_last_passing_run(tmp_path):
    first, second = make_runs(tmp_path, 2)
    db = tmp_path / "results" / "history.sqlite"
    for r in (first, second):
        history.add(db, r)
    assert all(c.passed is not False for _, checks in gate([first], db, GateConfig()) for c in checks)
    # the second run lost images: edit its predictions and metrics as a regression would
    predictions = pd.read_csv(second / "predictions.csv")
    predictions["pred1"] = (predictions["label"] + 1) % 1000
    predictions.to_csv(second / "predictions.csv", index=False)
    run = json.loads((second / "run.json").read_text())
    run["metrics"]["top1"] -= 5.0
    (second / "run.json").write_text(json.dumps(run))
    ((_, checks),) = gate([second], db, GateConfig(drop=0.1, max_flips=1))
    result = {c.name: c for c in checks}
    assert result["history top-1"].passed is False and "drop allowed 0.1" in result["history top-1"].detail
    assert result["history flips"].passed is False and first.name in result["history flips"].detail
