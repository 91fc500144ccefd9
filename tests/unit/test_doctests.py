"""`make test` runs the docstring examples of mowe/ (issue 14), and every module of
mowe/ imports without the optional extras (doctest collection imports them all)."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_make_test_runs_the_doctests_of_mowe():
    makefile = open(os.path.join(REPO, "Makefile")).read()
    recipe = makefile[makefile.index("\ntest:"):].split("\n\n")[0]
    assert re.search(r"pytest .*--doctest-modules mowe tests", recipe), recipe


def test_every_mowe_module_imports_without_the_optional_extras():
    """gradio, openai, datasets, ctranslate2, selenium, wandb are extras: a module may
    use them only inside functions, or doctest collection fails without them."""
    code = ("import sys, pkgutil, importlib, mowe\n"
            "for name in ('gradio', 'openai', 'datasets', 'ctranslate2', 'selenium',"
            " 'wandb', 'fastapi', 'uvicorn'):\n"
            "    sys.modules[name] = None\n"
            "for info in pkgutil.walk_packages(mowe.__path__, 'mowe.'):\n"
            "    if not info.name.endswith('__main__'):\n"
            "        importlib.import_module(info.name)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-2000:]
