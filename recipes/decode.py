#!/usr/bin/env python3
"""Decode a test manifest with a trained AudioLLM; write a hypothesis file (JSON lines).

Usage: python recipes/decode.py HPARAMS.yaml --test_manifest=M --hyp_file=OUT.jsonl
       [--key=value ...]

Loads the best checkpoint (lowest validation loss) from the YAML's checkpointer and
writes one line per utterance: ``{"id", "task", "instruction", "hyp", "ref",
"selected"}`` (``selected``: weak encoder chosen per router, or null). Rerunning skips
utterances already in the file, so an interrupted decode resumes.
"""

import json
import logging
import os
import sys

import torch
from tqdm import tqdm

from mowe.recipe import dataset, load_recipe_hparams

logger = logging.getLogger("mowe.decode")


def finished_ids(path):
    """Ids already decoded in ``path`` (a cut-off last line is dropped)."""
    done = set()
    if not os.path.isfile(path):
        return done
    good = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["id"])
                good.append(line)
            except (json.JSONDecodeError, KeyError):
                logger.warning("dropping an incomplete line of %s", path)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(good)
    return done


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    import speechbrain as sb

    _, run_opts, _, hparams = load_recipe_hparams(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    device = getattr(run_opts, "device", None) or "cpu"
    model = hparams["model"].to(device).eval()
    checkpoint = hparams["checkpointer"].recover_if_possible(min_key="loss")
    if checkpoint is None:
        sys.exit(f"error: no checkpoint in {hparams['save_folder']}: train first")
    hyp_file = hparams["hyp_file"]
    os.makedirs(os.path.dirname(os.path.abspath(hyp_file)), exist_ok=True)
    done = finished_ids(hyp_file)
    routers = model.mixture.router_kinds if model.mixture is not None else []
    test = dataset(hparams["test_manifest"])
    todo = [utt for utt in test.data_ids if utt not in done]
    if not todo:
        logger.info("all %d utterances already decoded in %s", len(done), hyp_file)
        return 0
    logger.info("decoding %d utterances (%d done before) with %s", len(todo), len(done),
                checkpoint.path)
    # Longest first: padding waste is smallest and an out-of-memory shows up at once.
    todo.sort(key=lambda utt: -test.data[utt]["duration"])
    subset = test.filtered_sorted(key_test={"id": lambda utt: utt in set(todo)})
    loader = sb.dataio.dataloader.make_dataloader(subset, batch_size=hparams["batch_size"])
    with open(hyp_file, "a", encoding="utf-8") as out, torch.no_grad():
        for batch in tqdm(loader, desc="decoding"):
            batch = batch.to(device)
            wavs, wav_lens = batch.sig
            hyps, selected = model.generate(wavs, wav_lens, batch.instruction,
                                            max_new_tokens=hparams["max_new_tokens"],
                                            return_selected=True)
            for i, utt in enumerate(batch.id):
                row = {"id": utt, "task": batch.task[i], "instruction": batch.instruction[i],
                       "hyp": hyps[i], "ref": batch.answer[i],
                       "selected": selected[i].tolist() if selected is not None else None,
                       "routers": routers}
                out.write(json.dumps(row) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
