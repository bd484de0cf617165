"""Structural checks of the repository, as functions of a folder or a text so that tests/test_architecture.py can
run each on a small tree of its own as well as on the real one.

- ``import_graph`` / ``import_cycles``: which module of a source folder imports which, and the cycles;
- ``long_modules`` / ``long_functions``: files and functions (methods included) over a number of lines;
- ``shared_folder_references``: lines that name the repository's ``shared`` folder as a path;
- ``smk_rules`` / ``identical_rules``: the rules of Snakemake files and those whose bodies are the same."""
from __future__ import annotations

import ast
import re
from pathlib import Path


# ------------------------------------------------------------------ the import graph
def module_files(src: Path) -> dict[str, Path]:
    """Every module under ``src`` (a folder holding top-level packages) by dotted name; a package's
    ``__init__.py`` is the package's own name (``pkg/sub/__init__.py`` is ``pkg.sub``)."""
    modules = {}
    for path in sorted(Path(src).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if any(not p.isidentifier() for p in parts):  # e.g. an egg-info or a folder that is no package
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            modules[".".join(parts)] = path
    return modules


def _base(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name ``from <level dots><target> import ...`` refers to inside ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level > 1:
        parts = parts[:max(0, len(parts) - (level - 1))]
    return ".".join(parts + ([target] if target else []))


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports anywhere (functions and methods included).

    ``import a.b`` imports ``a.b``; ``from a import b`` imports the module ``a.b`` where there is one, else
    ``a`` (a name of its ``__init__``); ``from . import x`` in a package's submodule imports ``x``, not the
    package. A module importing itself does not count."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node.level, node.module) if node.level else node.module
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(module)
    return found


def import_graph(src: Path) -> dict[str, set[str]]:
    files = module_files(src)
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v):  # Tarjan's algorithm; the graph of a package is small enough to recurse
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, component) for component in sorted(components, key=min)]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start = min(component)
    parent, queue = {start: None}, [start]
    for v in queue:
        for w in sorted(graph[v] & component):
            if w == start:
                path, x = [], v
                while x is not None:
                    path.append(x)
                    x = parent[x]
                return path[::-1] + [start]  # start -> ... -> v -> start
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


# ------------------------------------------------------------------ sizes
def line_count(path: Path) -> int:
    return len(Path(path).read_text(encoding="utf-8").splitlines())


def long_modules(src: Path, limit: int, allowed=()) -> list[str]:
    """``path: N lines`` for each .py file under ``src`` over ``limit`` lines, except the ``allowed`` paths
    (paths relative to the folder above ``src``, as ``src/pkg/module.py``)."""
    src, allowed = Path(src), {Path(a).resolve() for a in allowed}
    return [f"{path.relative_to(src.parent)}: {n} lines" for path in sorted(src.rglob("*.py"))
            if path.resolve() not in allowed and (n := line_count(path)) > limit]


def long_functions(src: Path, limit: int) -> list[str]:
    """``path:line name: N lines`` for each function or method (nested ones too) over ``limit`` lines."""
    src, out = Path(src), []
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in sorted(functions, key=lambda node: node.lineno):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{path.relative_to(src.parent)}:{node.lineno} {node.name}: {n} lines")
    return out


# ------------------------------------------------------------------ the shared folder
FOLDER = "shared"  # spelled apart so that this file does not name the folder itself
SHARED_PATH = re.compile(r"""(?:^|[\s"'`(]|\.\./)""" + FOLDER + "/")


def shared_folder_references(text: str) -> list[int]:
    """The numbers (1-based) of the lines of ``text`` that use the folder as a path: its name and a slash
    at the start of a line or after whitespace, a quote, a backtick, an opening parenthesis or ``../``."""
    return [i for i, line in enumerate(text.splitlines(), 1) if SHARED_PATH.search(line)]


def text_of(path: Path) -> str | None:
    """A file's text, or None for a binary file (a NUL byte, or not UTF-8) or something that is no file."""
    path = Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ------------------------------------------------------------------ Snakemake rules
RULE = re.compile(r"^rule\s+(\w+)\s*:")


def smk_rules(text: str) -> dict[str, str]:
    """Each top-level ``rule <name>:`` of a Snakemake file with its body: the indented lines up to the next
    line that starts in column 0, without blank lines, comment lines and trailing spaces."""
    rules, name, body = {}, None, []
    for line in text.splitlines() + ["<end>"]:
        if line.strip() and not line[0].isspace():
            if name is not None:
                rules[name] = "\n".join(body)
            m = RULE.match(line)
            name, body = (m.group(1), []) if m else (None, [])
        elif name is not None and line.strip() and not line.strip().startswith("#"):
            body.append(line.rstrip())
    return rules


def identical_rules(rules: dict[str, str]) -> list[list[str]]:
    """Groups (of two or more names) of rules whose bodies are the same."""
    by_body = {}
    for name, body in rules.items():
        by_body.setdefault(body, []).append(name)
    return sorted(sorted(names) for names in by_body.values() if len(names) > 1)
