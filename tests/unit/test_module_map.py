"""docs/module_map.md is generated from the module docstrings (tools/module_map.py):
it must be current, and a module without a docstring must stop the generator."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "module_map", os.path.join(REPO, "tools", "module_map.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_module_map_is_current():
    tool = load_tool()
    assert tool.main(["--check"]) == 0, "run: python tools/module_map.py"


def test_a_new_module_without_a_docstring_fails_the_map(tmp_path):
    tool = load_tool()
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""The package."""\n')
    (package / "sub" / "__init__.py").write_text('"""A subpackage:\nwhat it holds."""\n')
    (package / "sub" / "good.py").write_text('"""Does one thing.\n\nMore text."""\nx = 1\n')
    text = tool.render(str(package))
    assert "| `pkg.sub` | A subpackage: what it holds. |" in text
    assert "| `pkg.sub.good` | Does one thing. |" in text
    (package / "sub" / "new.py").write_text("x = 1\n")
    with pytest.raises(tool.MissingDocstringError, match="new.py has no module docstring"):
        tool.render(str(package))


def test_a_module_added_to_mowe_makes_the_committed_map_stale(tmp_path, monkeypatch):
    tool = load_tool()
    for name, text in tool.generated(os.path.join(REPO, "mowe")).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(tool, "PAGE", str(tmp_path / "module_map.md"))
    assert tool.main(["--check"]) == 0
    page = tmp_path / "module_map.md"
    page.write_text(page.read_text().replace("| `mowe.cli` |", "| `mowe.cli_old` |"))
    assert tool.main(["--check"]) == 1
    api = tmp_path / "api" / "mowe_models.md"
    page.write_text(tool.render(os.path.join(REPO, "mowe")))
    api.write_text(api.read_text().replace(".. automodule:: mowe.models.routers\n", ""))
    assert tool.main(["--check"]) == 1
