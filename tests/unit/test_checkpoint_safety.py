"""Checkpoint files are loaded with ``weights_only=True``: a crafted pickle in an
experiment folder is refused without running, generator states and training statistics
still restore exactly, and the loss trace is cut back to the resumed step."""

import ast
import json
import os
import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import speechbrain as sb
import torch

from mowe.train.checkpoints import AtomicCheckpointer
from mowe.train.resume import (CheckpointFormatError, RandomStates, TrainingStatistics,
                         truncate_loss_trace)
from mowe.train.stats import LossPartsTracker, RoutingStatistics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _RunsCode:
    """Unpickling this runs ``touch MARKER``, as a crafted checkpoint would."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path, marker):
    """Write a pickle that runs code when loaded with ``weights_only=False``."""
    torch.save({"torch": _RunsCode(marker)}, str(path))
    return str(path)


def draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(3).tolist(),
            [random.random() for _ in range(3)], random.gauss(0, 1))


def test_generator_states_round_trip_exactly(tmp_path):
    np.random.randn(1)  # leave a cached Gaussian in numpy's legacy state
    random.gauss(0, 1)  # and in random's
    path = tmp_path / "random_states.ckpt"
    RandomStates().save(str(path))
    expected = draws()
    torch.load(str(path), weights_only=True)  # the file is tensors and plain values
    states = RandomStates()
    states.load(str(path), end_of_epoch=False)
    states.apply_pending(at_epoch_start=False)
    assert draws() == expected


def test_training_statistics_round_trip(tmp_path):
    parts, routing = LossPartsTracker(), RoutingStatistics()
    parts.update({"next_token": torch.tensor(1.5), "mowe": 0.25})
    parts.update({"next_token": 0.5, "mowe": 0.75})
    routing.update(["asr", "er"], torch.tensor([[0, 2], [1, 2]]))
    brain = SimpleNamespace(loss_parts={sb.Stage.TRAIN: parts},
                            routing_stats={sb.Stage.TRAIN: routing}, resumed_train_stats=None)
    path = str(tmp_path / "training_statistics.ckpt")
    TrainingStatistics(brain).save(path)
    fresh = SimpleNamespace(resumed_train_stats=None)
    TrainingStatistics(fresh).load(path, end_of_epoch=False)
    loaded_parts, loaded_routing = fresh.resumed_train_stats
    assert loaded_parts.averages() == parts.averages() and loaded_parts.count == 2
    assert loaded_routing.to_dict() == routing.to_dict()


@pytest.mark.parametrize("loader", [
    lambda path: RandomStates().load(path, end_of_epoch=False),
    lambda path: TrainingStatistics(SimpleNamespace()).load(path, end_of_epoch=False),
])
def test_crafted_pickle_is_refused_and_does_not_run(tmp_path, loader):
    marker = tmp_path / "code_ran"
    path = crafted(tmp_path / "state.ckpt", marker)
    with pytest.raises(CheckpointFormatError, match="refused to load") as error:
        loader(path)
    assert not marker.exists()
    assert path in str(error.value) and "\n" not in str(error.value)


def test_checkpointer_loads_optimizer_and_model_files_weights_only(tmp_path):
    """SpeechBrain's own loader for modules/optimizers goes through weights_only too."""
    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    checkpointer = AtomicCheckpointer(str(tmp_path / "save"),
                                      recoverables={"model": module, "optimizer": optimizer})
    checkpoint = checkpointer.save_checkpoint()
    expected = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.zero_()
    checkpointer.recover_if_possible()
    torch.testing.assert_close(module.weight, expected)

    marker = tmp_path / "code_ran"
    crafted(os.path.join(checkpoint.path, "optimizer.ckpt"), marker)
    with pytest.raises(CheckpointFormatError, match="optimizer.ckpt"):
        checkpointer.recover_if_possible()
    assert not marker.exists()


def test_every_torch_load_in_the_repository_passes_weights_only_true():
    offenders = []
    for folder in ("mowe", "recipes", "tests", "egs", "tools", "bench"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                tree = ast.parse(open(path, encoding="utf-8").read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                            "torch.load"):
                        flags = {k.arg: k.value for k in node.keywords}
                        value = flags.get("weights_only")
                        if not (isinstance(value, ast.Constant) and value.value is True):
                            offenders.append(f"{os.path.relpath(path, REPO)}:{node.lineno}")
    assert not offenders, offenders


def write_trace(path, steps, tail=""):
    with open(path, "w", encoding="utf-8") as handle:
        for step in steps:
            handle.write(json.dumps({"optimizer_step": step, "epoch": 1, "loss": 1.0}) + "\n")
        handle.write(tail)


def test_loss_trace_is_cut_back_to_the_checkpoint_step(tmp_path):
    path = tmp_path / "loss_trace.jsonl"
    write_trace(path, [1, 2, 3, 4, 5], tail='{"optimizer_step": 6, "lo')  # killed mid-line
    assert truncate_loss_trace(str(path), 4) == 2
    assert [json.loads(line)["optimizer_step"] for line in path.read_text().splitlines()] \
        == [1, 2, 3, 4]
    assert not (tmp_path / "loss_trace.jsonl.partial").exists()
    assert truncate_loss_trace(str(path), 4) == 0  # nothing more to drop
    assert truncate_loss_trace(str(path), 0) == 4 and path.read_text() == ""  # fresh start
    assert truncate_loss_trace(str(tmp_path / "absent.jsonl"), 3) == 0
