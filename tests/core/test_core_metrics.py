"""Metrics: CSV and TensorBoard rows, the header widening for new metrics, truncation on resume."""

import csv
import math

import pytest

from bellman.core.metrics import Metrics, read_metrics


def rows(path):
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_rows_widen_and_resume_truncates(tmp_path):
    with Metrics(tmp_path) as m:
        m.log({"step": 1, "loss": 0.5})
        m.log({"step": 2, "loss": 0.25, "reward": math.nan})
        m.log({"step": 3, "loss": 0.125, "reward": 1.0})
    assert rows(tmp_path) == [{"step": "1", "loss": "0.5", "reward": ""}, {"step": "2", "loss": "0.25", "reward": ""},
                              {"step": "3", "loss": "0.125", "reward": "1.0"}]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    with Metrics(tmp_path, start_step=2) as m:  # resumed from a checkpoint at step 2: step 3 is dropped
        m.log({"step": 3, "loss": 0.1, "reward": 2.0})
    assert [r["step"] for r in rows(tmp_path)] == ["1", "2", "3"] and rows(tmp_path)[2]["loss"] == "0.1"
    cols = read_metrics(tmp_path)
    assert cols["step"] == [1.0, 2.0, 3.0] and math.isnan(cols["reward"][0]) and cols["reward"][2] == 2.0
    with pytest.raises(ValueError, match="needs a 'step'"):
        Metrics().log({"loss": 1.0})


def test_read_metrics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.csv"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.csv").write_text("step,loss\n1,abc\n")
    with pytest.raises(ValueError, match=r"line 2: loss = 'abc' is not a number"):
        read_metrics(tmp_path)
