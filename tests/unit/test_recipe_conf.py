"""Each recipe owns its configuration (issue 14): egs/<dataset>/conf/train.yaml extends
the shared paper setup with the dataset's own keys, conf/decode.yaml holds the
generation settings, and overrides stay as strict as for the shared file."""

import glob
import os
import subprocess
import sys

import pytest
import ruamel.yaml

from mowe.recipe.hparams import expand_extends, load_recipe_hparams

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(REPO, "recipes", "conf", "paper", "train.yaml")
PAPER_RECIPES = ["librispeech", "meld", "clotho_aqa", "spoken_squad", "audiocaps", "multitask"]
TASK = {"librispeech": ["asr"], "meld": ["er"], "clotho_aqa": ["aqa"], "spoken_squad": ["sqa"],
        "audiocaps": ["ac"], "multitask": ["asr", "er", "aqa", "sqa", "ac"]}


def test_every_recipe_has_its_train_and_decode_config():
    recipes = sorted(os.path.basename(os.path.dirname(p))
                     for p in glob.glob(os.path.join(REPO, "egs", "*", "run.sh")))
    assert set(PAPER_RECIPES) | {"synthetic", "TEMPLATE"} <= set(recipes)
    for name in recipes:
        for conf in ("train.yaml", "decode.yaml"):
            assert os.path.isfile(os.path.join(REPO, "egs", name, "conf", conf)), (name, conf)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_recipe_config_is_thin_and_extends_the_shared_setup(name):
    path = os.path.join(REPO, "egs", name, "conf", "train.yaml")
    own = ruamel.yaml.YAML(typ="safe").load(open(path))
    assert own["extends"] == "../../../recipes/conf/paper/train.yaml"
    assert len(own) <= 8, "a recipe holds only the dataset's own keys"
    assert own["tasks"] == TASK[name]
    base, combined, _ = expand_extends(path)
    assert base == SHARED
    document = ruamel.yaml.YAML().load(combined)
    assert "model" in document and "checkpointer" in document and "extends" not in document
    rows = subprocess.run(["bash", "-c", f". {REPO}/recipes/paper_rows.sh; echo $paper_rows"],
                          capture_output=True, text=True).stdout.split()
    assert set(own["paper_rows"]) <= set(rows)


def write(path, text):
    path.write_text(text)
    return str(path)


def test_extends_merges_keys_keeps_includes_and_strict_overrides(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    write(shared / "part.yaml", "size: 2\nitems: !new:collections.Counter\n    a: !ref <size>\n")
    write(shared / "train.yaml", "output_folder: !PLACEHOLDER\nepochs: 5\nlr: 0.1\n"
          "part: !include:part.yaml\n    size: 3\n")
    recipe = tmp_path / "egs" / "toy" / "conf"
    recipe.mkdir(parents=True)
    conf = write(recipe / "train.yaml", "extends: ../../../shared/train.yaml\nepochs: 2\n"
                 "tasks: [asr]\n")
    hparams_file, _, overrides, hparams = load_recipe_hparams(
        [conf, f"--output_folder={tmp_path}/exp", "--lr=0.5"])
    assert hparams["epochs"] == 2 and hparams["tasks"] == ["asr"] and hparams["lr"] == 0.5
    assert hparams["part"]["items"]["a"] == 3      # the shared file's !include still works
    # what SpeechBrain saves as hyperparams.yaml: the shared file + every override
    from hyperpyyaml import resolve_references

    saved = ruamel.yaml.YAML().load(
        resolve_references(open(hparams_file), overrides).getvalue())
    assert saved["epochs"] == 2 and saved["tasks"] == ["asr"] and saved["lr"] == 0.5
    with pytest.raises(SystemExit, match="lr must be a number"):
        load_recipe_hparams([conf, f"--output_folder={tmp_path}/exp", "--lr=fast"])
    with pytest.raises(SystemExit, match="cannot load"):   # a typo is not a new key
        load_recipe_hparams([conf, f"--output_folder={tmp_path}/exp", "--lrr=0.5"])


def test_recipe_config_builds_the_paper_model(tmp_path):
    from mowe.utils.tiny_models import make_tiny_causal_lm, make_tiny_whisper

    whisper = make_tiny_whisper(str(tmp_path / "whisper"))
    llm = make_tiny_causal_lm(str(tmp_path / "llama"), "llama")
    conf = os.path.join(REPO, "egs", "meld", "conf", "train.yaml")
    _, _, overrides, hparams = load_recipe_hparams([
        conf, f"--output_folder={tmp_path / 'exp'}", f"--data_folder={tmp_path}",
        f"--pretrained_cache={tmp_path / 'cache'}", f"--base_encoder_source={whisper}",
        f"--weak_encoder_source={whisper}", f"--llm_source={llm}", "--llm_dtype=float32",
        "--routers=[dep]", "--num_weak_encoders=2",
        "--spec={adapter_dim: 32, lora_rank: 4}"])
    assert hparams["tasks"] == ["er"] and hparams["max_new_tokens"] == 16
    assert hparams["global_batch_size"] == 32          # the shared setup
    assert len(hparams["model"].mixture.encoders) == 2  # a shared key, overridden


def test_run_sh_refuses_a_row_the_recipe_does_not_list(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("extends: " + SHARED + "\npaper_rows: [table3]\n")
    recipe = os.path.join(REPO, "egs", "meld")
    result = subprocess.run(["bash", "run.sh", "--row", "table5", "--train_config", str(conf),
                             "--tag", "pytest_row"], cwd=recipe, capture_output=True,
                            text=True, env=dict(os.environ, MOWE_PYTHON=sys.executable))
    assert result.returncode == 2, result.stderr
    assert "--row table5 is not one of this recipe's rows" in result.stderr
    assert not os.path.exists(os.path.join(recipe, "exp", "pytest_row"))


def test_template_config_builds_the_offline_model(tmp_path):
    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    pretrained = make_tiny_pretrained_dir(str(tmp_path / "pretrained"))
    conf = os.path.join(REPO, "egs", "TEMPLATE", "conf", "train.yaml")
    _, _, _, hparams = load_recipe_hparams([
        conf, f"--output_folder={tmp_path / 'exp'}", f"--data_folder={tmp_path}",
        f"--pretrained_dir={pretrained}", "--spec={adapter_dim: 32, lora_rank: 4}"])
    assert hparams["tasks"] == ["asr", "er", "aqa", "sqa", "ac"]
    assert hparams["number_of_epochs"] == 2 and hparams["model"].mixture is not None
