"""run.sh refuses impossible options up front with exit code 2, before any stage runs
(issue 17, case 5), and parse_options.sh keeps each option's type."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "egs", "synthetic")


def run(*args):
    env = dict(os.environ, MOWE_PYTHON=sys.executable)
    return subprocess.run(["bash", "run.sh", *args], cwd=RECIPE, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--stage", "9"], "--stage 9 does not exist: stages are 0 provision"),
    (["--stage", "4", "--stop_stage", "2"], "--stage 4 is after --stop_stage 2"),
    (["stage4"], "unexpected argument 'stage4'"),
    (["--stage", "1", "extra"], "unexpected argument 'extra'"),
    (["--size", "huge"], "--size huge is not a corpus size (choose one of: tiny"),
    (["--stage", "abc"], "--stage takes a whole number, not 'abc'"),
    (["--nj=two"], "--nj takes a whole number, not 'two'"),
    (["--no_such_option", "1"], "unknown option --no_such_option"),
])
def test_bad_options_are_refused_before_any_stage(args, message):
    tag = "pytest_refused"
    exp = os.path.join(RECIPE, "exp", tag)
    result = run("--tag", tag, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "stage 0" not in result.stdout and not os.path.exists(exp)


def test_boolean_options_take_true_or_false(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text(f"verbose=false count=3\n. {REPO}/tools/parse_options.sh\n"
                      'echo "$verbose $count"\n')
    good = subprocess.run(["bash", str(script), "--verbose", "true", "--count=5"],
                          capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.strip() == "true 5"
    bad = subprocess.run(["bash", str(script), "--verbose", "yes"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--verbose takes true or false, not 'yes'" in bad.stderr
