"""Write (or check) the generated pages of the docs: ``docs/module_map.md`` (every module of
``mowe/`` with the first paragraph of its docstring, grouped by subpackage) and the API
reference under ``docs/api/`` (autodoc, one page per subpackage).

Usage: ``python tools/module_map.py`` rewrites the page; ``--check`` exits 1 when the page
is stale or a module has no docstring (tests/unit/test_module_map.py runs the check).
"""

import argparse
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "module_map.md")


class MissingDocstringError(ValueError):
    """A module without a docstring: the map cannot say what it is."""


def first_line(path):
    """The first paragraph of the module docstring of ``path``, on one line."""
    with open(path, encoding="utf-8") as handle:
        doc = ast.get_docstring(ast.parse(handle.read()))
    if not doc or not doc.strip():
        raise MissingDocstringError(f"{path} has no module docstring: add one whose first "
                                    "line says what the module is for")
    paragraph = doc.strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def collect(package_dir):
    """``[(subpackage, [(module, first line), ...]), ...]`` in path order."""
    groups = {}
    parent = os.path.dirname(package_dir)
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")) and d != "templates")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            dotted = os.path.relpath(path, parent)[:-3].replace(os.sep, ".")
            dotted = dotted.removesuffix(".__init__")
            package = os.path.relpath(root, parent).replace(os.sep, ".")
            groups.setdefault(package, []).append((dotted, first_line(path)))
    return sorted(groups.items())


def render(package_dir):
    """The Markdown text of the module map."""
    lines = ["# Module map", "",
             "Every module of the package with the first paragraph of its docstring. Generated "
             "by `python tools/module_map.py` from the docstrings; a test fails when this "
             "page is stale.", ""]
    for package, modules in collect(package_dir):
        lines += [f"## `{package}`", "", "| module | what it is |", "|---|---|"]
        for dotted, text in modules:
            lines.append(f"| `{dotted}` | {text.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)


def api_pages(package_dir):
    """``{file name under docs/api: Markdown}``: one page per subpackage, autodoc of each
    of its modules, and the index that lists them."""
    pages, index = {}, ["# API reference", "",
                        "Generated from the docstrings (numpy style), one page per "
                        "subpackage.", "", "```{toctree}", ":maxdepth: 1", ""]
    for package, modules in collect(package_dir):
        name = package.replace(".", "_")
        index.append(name)
        body = [f"# `{package}`", ""]
        for dotted, _ in modules:
            if dotted.endswith("__main__"):
                continue  # command lines: see the command reference
            body += ["```{eval-rst}", f".. automodule:: {dotted}", "```", ""]
        pages[f"{name}.md"] = "\n".join(body)
    pages["index.md"] = "\n".join(index + ["```", ""])
    return pages


def generated(package_dir):
    """``{path under docs/: text}`` of every generated page."""
    pages = {"module_map.md": render(package_dir)}
    pages.update({os.path.join("api", name): text
                  for name, text in api_pages(package_dir).items()})
    return pages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/module_map.md is stale (writes nothing)")
    args = parser.parse_args(argv)
    try:
        pages = generated(os.path.join(ROOT, "mowe"))
    except MissingDocstringError as error:
        print(f"module_map: {error}", file=sys.stderr)
        return 1
    docs = os.path.dirname(PAGE)
    if args.check:
        stale = []
        for name, text in pages.items():
            path = os.path.join(docs, name)
            current = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
            if current != text:
                stale.append(name)
        if stale:
            print(f"module_map: stale pages under docs/: {', '.join(stale)}: run python "
                  "tools/module_map.py", file=sys.stderr)
            return 1
        return 0
    for name, text in pages.items():
        path = os.path.join(docs, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    print(f"wrote {len(pages)} pages under {os.path.relpath(docs, ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
