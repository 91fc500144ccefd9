"""Packages are data: loading one runs no code from it (mowe/inference/safe_spec.py), and packing
never deletes what the toolkit did not write."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from mowe.inference.api import AudioLLMInference
from mowe.inference.safe_spec import UntrustedSpecError, check_spec

ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO)


@pytest.fixture
def package_copy(tiny_package, tmp_path):
    """A copy of the tiny package beside it (its frozen models are found relative to it)."""
    copy = tiny_package["root"] / "packed" / f"copy_{tmp_path.name}"
    shutil.copytree(tiny_package["package"], copy)
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def payloads(marker):
    """YAML lines that would create ``marker`` if anything evaluated them."""
    command = f"touch {marker}"
    return {
        "apply": f"pwn: !apply:os.system [{command}]",
        "new": f"pwn: !new:subprocess.Popen [[touch, {marker}]]",
        "name_then_ref": f"pwn: !name:os.system\nagain: !applyref:os.system [{command}]",
        "python_tag": f"pwn: !!python/object/apply:os.system [{command}]",
        "tag_directive": f"%TAG !x! tag:yaml.org,2002:python/object/apply:\n---\n"
                         f"pwn: !x!os.system [{command}]",
        "tuple_scalar": f"pwn: (!!python/object/apply:os.system [{command}], 1)",
        "module": "pwn: !module:os",
        "include": "pwn: !include:/etc/hostname",
        "ref_bomb": "big: !ref 9**9**9**9",
        "nested": f"adapter_extra:\n    - deep: [1, 2, !apply:os.system [{command}]]",
    }


@pytest.mark.parametrize("kind", sorted(payloads("x")))
def test_each_payload_is_refused_and_runs_nothing(package_copy, tmp_path, kind):
    marker = tmp_path / "pwned"
    package = package_copy
    spec = package / "hyperparams.yaml"
    text = spec.read_text()
    payload = payloads(marker)[kind]
    lines = text.count("\n") + 1
    spec.write_text(payload + "\n" + text if payload.startswith("%TAG")
                    else text + "\n" + payload + "\n")
    with pytest.raises(UntrustedSpecError) as error:
        AudioLLMInference.from_pretrained(str(package))
    message = str(error.value)
    assert "hyperparams.yaml:" in message and "trust_remote_code" in message
    if not payload.startswith("%TAG"):
        line = int(message.split("hyperparams.yaml:")[1].split(":")[0])
        assert line > lines, "the line named is the payload's"
    assert not marker.exists()


def test_the_toolkits_own_packages_need_no_opt_in(tiny_package):
    check_spec((tiny_package["package"] / "hyperparams.yaml").read_text(), "hyperparams.yaml")
    for name in ("audio_llm.yaml", "offline_paper_analog.yaml", "specialist_pool.yaml"):
        with open(os.path.join(REPO, "recipes", "conf", "model", name)) as handle:
            check_spec(handle.read(), name)


def test_torch_layers_pass_and_other_torch_calls_do_not():
    check_spec("a: !new:torch.nn.Linear [2, 3]\n")
    with pytest.raises(UntrustedSpecError, match="torch.save"):
        check_spec("a: !apply:torch.save [1, /tmp/x]\n")
    with pytest.raises(UntrustedSpecError, match="mowe.recipe.launch"):
        check_spec("a: !apply:mowe.recipe.launch.main []\n")


def test_the_opt_in_loads_a_package_with_a_users_class(tiny_package, package_copy, tmp_path,
                                                       monkeypatch):
    package = package_copy
    module = tmp_path / "user_code"
    module.mkdir()
    (module / "my_adapters.py").write_text(
        "import mowe.models.adapters\n"
        "def make_adapter(input_dim, **kwargs):\n"
        "    open(__file__ + '.used', 'w').close()\n"
        "    return mowe.models.adapters.make_adapter(input_dim, **kwargs)\n")
    monkeypatch.syspath_prepend(str(module))
    spec = package / "hyperparams.yaml"
    text = spec.read_text()
    assert "!name:mowe.models.adapters.make_adapter" in text
    spec.write_text(text.replace("!name:mowe.models.adapters.make_adapter",
                                 "!name:my_adapters.make_adapter"))
    with pytest.raises(UntrustedSpecError, match="my_adapters.make_adapter"):
        AudioLLMInference.from_pretrained(str(package))
    assert not (module / "my_adapters.py.used").exists()
    model = AudioLLMInference.from_pretrained(str(package), trust_remote_code=True)
    assert (module / "my_adapters.py.used").exists()
    row = tiny_package["hyps"][0]
    assert model.answer(row["wav"], row["instruction"]) == row["hyp"]


def test_cli_refuses_in_one_line_and_has_the_flag(tiny_package, package_copy, tmp_path):
    marker = tmp_path / "pwned"
    package = package_copy
    with open(package / "hyperparams.yaml", "a") as handle:
        handle.write(f"\npwn: !apply:os.system [touch {marker}]\n")
    row = tiny_package["hyps"][0]
    result = subprocess.run([sys.executable, "-m", "mowe.inference.ask", "--model", str(package),
                             row["wav"], "--instruction", row["instruction"]],
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode != 0 and "!apply:os.system" in result.stderr
    assert "Traceback" not in result.stderr and not marker.exists()
    help_text = subprocess.run([sys.executable, "-m", "mowe.inference.ask", "--help"],
                               capture_output=True, text=True, env=ENV, timeout=120).stdout
    assert "--trust_remote_code" in help_text


def run_pack(tiny_package, out, *extra):
    return subprocess.run([sys.executable, "-m", "mowe.inference.pack", "--exp_dir",
                           str(tiny_package["exp"]), "--out", str(out), "--no_verify", *extra],
                          capture_output=True, text=True, env=ENV, timeout=900)


def test_pack_never_deletes_a_folder_it_did_not_write(tiny_package, tmp_path):
    foreign = tmp_path / "experiment"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("months of work")
    for extra in ((), ("--overwrite",)):
        result = run_pack(tiny_package, foreign, *extra)
        assert result.returncode != 0 and "not a previous package" in result.stderr
        assert "Traceback" not in result.stderr
        assert (foreign / "notes.txt").read_text() == "months of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment"], "no partial left"
    # the current folder (``--out .``) is refused the same way
    result = subprocess.run([sys.executable, "-m", "mowe.inference.pack", "--exp_dir",
                             str(tiny_package["exp"]), "--out", ".", "--no_verify"],
                            capture_output=True, text=True, env=ENV, timeout=900,
                            cwd=str(foreign))
    assert result.returncode != 0 and (foreign / "notes.txt").exists()


def test_pack_replaces_a_previous_package_only_with_overwrite(tiny_package, tmp_path):
    out = tmp_path / "package"
    out.mkdir()  # an empty folder is fine
    assert run_pack(tiny_package, out).returncode == 0
    first = (out / "mowe_package.json").read_text()
    result = run_pack(tiny_package, out)
    assert result.returncode != 0 and "--overwrite" in result.stderr
    assert (out / "mowe_package.json").read_text() == first
    assert run_pack(tiny_package, out, "--overwrite").returncode == 0
    assert (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"], "nothing left beside"


def test_smoke_ids_cannot_leave_the_output_folder(tmp_path):
    from mowe.inference.smoke_check import SentenceListError, read_sentences

    for bad in ("../escape", "/tmp/abs", ".hidden", "a/b"):
        listing = tmp_path / "sentences.tsv"
        listing.write_text(f"{bad}\ten-us\thello there\n")
        with pytest.raises(SentenceListError, match="plain name"):
            read_sentences(str(listing))


def test_packages_hold_no_path_of_the_packing_machine(tiny_package, tmp_path, monkeypatch):
    package = tiny_package["package"]
    root = str(tiny_package["root"])
    for name in ("hyperparams.yaml", "mowe_package.json", "README.md"):
        assert root not in (package / name).read_text(), f"{name} holds {root}"
    # the package and its frozen models moved together: found relative to the package
    moved = tmp_path / "moved"
    shutil.copytree(tiny_package["root"] / "pretrained", moved / "pretrained", symlinks=True)
    shutil.copytree(package, moved / "packed" / "mowe")
    row = tiny_package["hyps"][0]
    model = AudioLLMInference.from_pretrained(str(moved / "packed" / "mowe"))
    assert model.answer(row["wav"], row["instruction"]) == row["hyp"]
    # the package alone elsewhere: $MOWE_PRETRAINED_DIR names where the models are
    alone = tmp_path / "alone" / "mowe"
    shutil.copytree(package, alone)
    with pytest.raises(FileNotFoundError):
        AudioLLMInference.from_pretrained(str(alone))
    monkeypatch.setenv("MOWE_PRETRAINED_DIR", str(moved / "pretrained"))
    model = AudioLLMInference.from_pretrained(str(alone))
    assert model.answer(row["wav"], row["instruction"]) == row["hyp"]
