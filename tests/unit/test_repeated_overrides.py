"""A recipe system's own ``--spec`` plus a user's ``--train_args "--spec=..."``: both
apply (merged key by key) instead of a duplicate YAML key that does not load."""

from mowe.recipe.hparams import load_recipe_hparams, merge_repeated_overrides


def test_two_spec_overrides_load_as_one(tmp_path):
    recipe = tmp_path / "train.yaml"
    recipe.write_text("spec:\n  mixture: small\n  routing_selected_weight: p\n"
                      "  adapter: {kind: linear, tokens: 100}\nseed: 1\n")
    _, _, _, hparams = load_recipe_hparams(
        [str(recipe), "--spec={mixture: null, adapter: {tokens: 50}}", "--seed=2",
         "--spec={routing_selected_weight: one}", "--seed=3"])
    assert hparams["spec"] == {"mixture": None, "routing_selected_weight": "one",
                               "adapter": {"kind": "linear", "tokens": 50}}
    assert hparams["seed"] == 3  # any other repeated option: the last one


def test_single_options_are_left_alone():
    argv = ["t.yaml", "--spec={a: 1}", "--lr=0.1", "--device=cpu"]
    assert merge_repeated_overrides(argv) == argv
