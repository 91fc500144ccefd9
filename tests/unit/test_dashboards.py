"""TensorBoard is on by default; without the package (or without wandb when a W&B
project is asked for) training logs one warning and goes on (issue 14)."""

import logging
import sys

from mowe.train.dashboards import RunDashboard


def test_missing_tensorboard_warns_once_and_carries_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    dashboard = RunDashboard(str(tmp_path / "tb"))
    with caplog.at_level(logging.WARNING, logger="mowe.train.dashboards"):
        for step in range(1, 4):
            dashboard.log_step(step, {"loss": 1.0})
        dashboard.log_epoch(1, {"epoch": 1}, {"loss": 1.0}, {"loss": 2.0})
    warnings = [r for r in caplog.records if "TensorBoard logging is off" in r.message]
    assert len(warnings) == 1 and not dashboard.active
    assert not (tmp_path / "tb").exists()


def test_missing_wandb_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)
    dashboard = RunDashboard(str(tmp_path / "tb"), tensorboard=False, wandb_project="mowe")
    with caplog.at_level(logging.WARNING, logger="mowe.train.dashboards"):
        dashboard.log_step(1, {"loss": 1.0})
        dashboard.log_step(2, {"loss": 1.0})
    assert sum("W&B logging is off" in r.message for r in caplog.records) == 1


def test_nothing_is_written_before_the_first_scalar(tmp_path):
    RunDashboard(str(tmp_path / "tb"))   # as when decode.py loads the training YAML
    assert not (tmp_path / "tb").exists()
