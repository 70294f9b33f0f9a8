"""The docs a newcomer reads: a short README, and every document or file the code and the docs cite exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("experiments", "bridge", "ns3_scenarios", "learner", "messages", "tests")
CITED = re.compile(r"(?<![\w./-])((?:experiments|bridge|ns3_scenarios|learner|messages|tests)/[\w./-]+\.(?:md|py|toml|h))")


def _texts():
    files = [ROOT / "README.md", ROOT / "Makefile"]
    for package in PACKAGES:
        files += [p for p in (ROOT / package).rglob("*") if p.suffix in (".py", ".md", ".toml")
                  and "__pycache__" not in p.parts]
    return {path: path.read_text() for path in files}


def test_the_readme_is_a_short_guide():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_file_the_code_and_the_docs_cite_exists():
    missing = {(str(path.relative_to(ROOT)), cited) for path, text in _texts().items()
               for cited in CITED.findall(text) if not (ROOT / cited.rstrip(".")).exists()}
    assert not missing


def test_markdown_links_resolve():
    for path in [ROOT / "README.md", *[p for package in PACKAGES for p in (ROOT / package).rglob("*.md")]]:
        for target in re.findall(r"\]\(([^)#]+)\)", path.read_text()):
            if not target.startswith("http"):
                assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to missing {target}"


def test_no_document_outside_the_project_is_cited_and_papers_go_by_name():
    outside = re.compile(r"(?<![\w/])(algorithms\.md|ns3-notes\.md|\.\./shared)")
    offenders = {str(path.relative_to(ROOT)) for path, text in _texts().items() if outside.search(text)}
    assert not offenders
    numbered = re.compile(r"seed 00\d", re.IGNORECASE)
    assert not {str(p.relative_to(ROOT)) for p, text in _texts().items() if numbered.search(text)
                and p.name != "test_docs.py"}


def test_every_algorithm_is_in_the_algorithm_table():
    from learner.algorithms.registry import ALGORITHMS

    table = (ROOT / "learner" / "README.md").read_text()
    assert all(f"| `{name}` |" in table for name in ALGORITHMS)


def test_every_module_imports_on_its_own_without_circles():
    """Each module imported first, with no other project module loaded before it (an import circle shows
    up as a partially initialised module; learner.server had one)."""
    import subprocess
    import sys

    script = '''
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
failed = []
names = sorted(".".join(p.relative_to(root).with_suffix("").parts) for package in ("messages", "learner", "bridge",
               "ns3_scenarios", "experiments") for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
for name in names:
    name = name.removesuffix(".__init__")
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("messages", "learner", "bridge", "ns3_scenarios",
                                                                 "experiments")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
'''
    done = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr[-2000:]


# Which project packages each package may import (experiments/design.md, "Layers"): one way, messages at the bottom.
ALLOWED_IMPORTS = {"messages": set(), "ns3_scenarios": {"messages"}, "learner": {"messages"},
                   "bridge": {"messages", "ns3_scenarios"},
                   "experiments": {"messages", "ns3_scenarios", "learner", "bridge"}}


def test_the_layers_import_one_way_and_messages_only_numpy():
    import sys

    third_party = {"messages": {"numpy"}}
    for package, allowed in ALLOWED_IMPORTS.items():
        for path, name in _absolute_imports(package):
            top = name.split(".")[0]
            if top in ALLOWED_IMPORTS and top != package:
                assert top in allowed, f"{path.relative_to(ROOT)} imports {name}"
            if package in third_party and top not in ALLOWED_IMPORTS:
                assert top in third_party[package] or top in sys.stdlib_module_names, \
                    f"{path.relative_to(ROOT)} imports {name}"


def _absolute_imports(package: str):
    """(file, module name) of every absolute import in ``package``'s source."""
    import ast

    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield path, node.module


def test_every_imported_third_party_package_is_declared():
    """What the packages import is in pyproject.toml's dependencies or extras (by its distribution's name) and
    pinned in requirements.txt or requirements-<extra>.txt; ns-3's bindings bring cppyy with them."""
    import sys
    import tomllib

    distribution = {"sklearn": "scikit-learn", "tomli_w": "tomli-w", "cppyy": "ns3", "libcppyy": "ns3"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ ]", d)[0].lower() for d in
                [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]}
    pinned = {line.split("==")[0].lower() for path in ROOT.glob("requirements*.txt")
              for line in path.read_text().splitlines() if "==" in line}
    for package in ALLOWED_IMPORTS:
        for path, name in _absolute_imports(package):
            top = name.split(".")[0]
            if top not in ALLOWED_IMPORTS and top not in sys.stdlib_module_names:
                wanted = distribution.get(top, top).lower()
                assert wanted in declared and wanted in pinned, f"{path.relative_to(ROOT)} imports {name}"


def test_an_extra_is_imported_only_where_it_is_used_so_a_bare_install_imports_every_module():
    """Ray and the notebook packages are extras: no module imports them at its top level."""
    import ast
    import tomllib

    extras = {re.split(r"[<>=!~ ]", d)[0].lower() for extra in
              tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"].values()
              for d in extra}
    for package in ALLOWED_IMPORTS:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:  # module level only
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                assert not any(name.split(".")[0] in extras for name in names), f"{path.relative_to(ROOT)}: {names}"
