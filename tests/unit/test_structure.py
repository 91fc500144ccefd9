"""The package's shape: no import cycles in mowe/ or bench/, no two modules of one file
name in mowe/, no module over the size a reader can hold (~600 lines)."""

import ast
import collections
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_LINES = 600
ANY_NAME = ("__init__.py", "__main__.py")


def modules(folder, package):
    """``{dotted name: path}`` of the .py files under ``REPO/folder``."""
    found = {}
    for root, dirs, files in os.walk(os.path.join(REPO, folder)):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "results", "templates")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, REPO if package else os.path.join(REPO, folder))
                dotted = relative[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def imports(path, known):
    """The modules of ``known`` that ``path`` imports, at any depth of the file (an import
    inside a function still closes a cycle once that function runs)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in known:
                found.add(name)
    return found


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def import_graph(folder, package):
    known = modules(folder, package)
    graph = {}
    for name, path in known.items():
        # a package imports its own submodules by name; the parent edge is not a cycle
        graph[name] = {target for target in imports(path, known)
                       if target != name and not target.startswith(name + ".")
                       and not name.startswith(target + ".")}
    return graph


def test_no_import_cycles_in_mowe():
    assert cycles(import_graph("mowe", package=True)) == []


def test_no_import_cycles_in_bench():
    assert cycles(import_graph("bench", package=False)) == []


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_two_modules_of_one_name_in_mowe():
    by_name = collections.defaultdict(list)
    for path in modules("mowe", package=True).values():
        if os.path.basename(path) not in ANY_NAME:
            by_name[os.path.basename(path)].append(os.path.relpath(path, REPO))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


def test_no_module_over_the_size_limit():
    long = {}
    for folder, package in (("mowe", True), ("bench", False), ("recipes", False)):
        for path in modules(folder, package).values():
            count = sum(1 for _ in open(path, encoding="utf-8"))
            if count > MAX_LINES:
                long[os.path.relpath(path, REPO)] = count
    assert long == {}, f"split these modules (at most {MAX_LINES} lines): {long}"
