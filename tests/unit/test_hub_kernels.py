"""Hugging Face hub kernels stay off unless asked for.

transformers >= 5 with the ``kernels`` package (which it requires) kernelizes the models
it loads; on a GPU that fetches kernels from the Hub when ``model.eval()`` runs, and on
an offline machine the recipes' feature stage died there ("Version 1 of
'kernels-community/activation' is not available in the local cache"). Importing
:mod:`mowe` sets transformers' own switch ``USE_HUB_KERNELS`` to ``NO`` unless the user
set it.
"""

import os
import subprocess
import sys

import pytest


def _switch_after_import(**env):
    environment = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c",
         "import os, mowe; print(os.environ.get('USE_HUB_KERNELS'))"],
        env=environment, capture_output=True, text=True, check=True).stdout.strip()


def test_importing_mowe_turns_hub_kernels_off():
    assert _switch_after_import() == "NO"


def test_a_users_own_setting_is_kept():
    assert _switch_after_import(USE_HUB_KERNELS="YES") == "YES"


def test_the_llm_the_recipes_load_is_not_kernelized(tiny_models):
    pytest.importorskip("kernels")
    from mowe.models.llm import LanguageModel

    llm = LanguageModel(tiny_models["llama"], lora_rank=2)
    base = llm.model.get_base_model()
    assert base.use_kernels is False
    base.eval()  # where a GPU run fetched kernels: must not try now
    assert base.use_kernels is False
