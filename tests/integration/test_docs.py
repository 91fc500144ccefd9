"""`make docs` builds the Sphinx site with warnings as errors (broken references, missing
pages, docstrings autodoc cannot read), as CI does on a fresh clone."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_make_docs_uses_warnings_as_errors():
    makefile = open(os.path.join(REPO, "Makefile"), encoding="utf-8").read()
    recipe = makefile[makefile.index("\ndocs:"):].split("\n\n")[0]
    assert re.search(r"sphinx(-build| -M| .*build).* -W", recipe) or " -W " in recipe, recipe


def test_the_site_builds_without_warnings(tmp_path):
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         os.path.join(REPO, "docs"), str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
        env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for page in ("index", "installation", "quickstart", "concepts", "module_map",
                 "api/index"):
        assert (out / f"{page}.html").is_file(), page
