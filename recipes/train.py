#!/usr/bin/env python3
"""Train an AudioLLM with MoWEBrain from a recipe YAML.

Usage: python recipes/train.py HPARAMS.yaml [--key=value ...] [SpeechBrain run options]

The YAML provides ``model``, ``opt_class``, ``epoch_counter``, ``checkpointer``,
``train_manifest``, ``valid_manifest``, ``batch_size`` and ``output_folder`` (see
``egs/synthetic/conf/train.yaml``). Training resumes from the newest checkpoint in
``save_folder``. Model-spec keys are overridden through the included spec, e.g.
``--spec "{mixture: null}"`` for the base-only baseline.
"""

import logging
import math
import sys

import speechbrain as sb

from mowe.brain import MoWEBrain
from mowe.recipe import dataset, load_recipe_hparams

logger = logging.getLogger("mowe.train")


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    hparams_file, run_opts, overrides, hparams = load_recipe_hparams(argv)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"],
                                   hyperparams_to_save=hparams_file, overrides=overrides)
    train = dataset(hparams["train_manifest"], hparams.get("max_duration"))
    valid = dataset(hparams["valid_manifest"], hparams.get("max_duration"))
    steps = hparams["number_of_epochs"] * math.ceil(len(train) / hparams["batch_size"])
    if "lr_scheduler" in hparams:
        factory = hparams["lr_scheduler"]
        hparams["lr_scheduler"] = lambda optimizer: factory(optimizer,
                                                            num_training_steps=steps)
    brain = MoWEBrain(modules={"model": hparams["model"]}, opt_class=hparams["opt_class"],
                      hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    logger.info("training on %d clips (%d validation), %d optimizer steps",
                len(train), len(valid), steps // brain.grad_accumulation_factor)
    brain.fit(hparams["epoch_counter"], train, valid,
              train_loader_kwargs={"batch_size": hparams["batch_size"], "shuffle": True,
                                   "num_workers": hparams.get("num_workers", 0)},
              valid_loader_kwargs={"batch_size": hparams["batch_size"],
                                   "num_workers": hparams.get("num_workers", 0)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
