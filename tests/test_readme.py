"""The README stays a guide that tells the truth: short, every relative link in it and in
``docs/`` resolves, every config it names exists, and its Architecture table lists exactly the
parts of ``gnn_inn`` each part imports (checked with ``ast``, imports inside functions
included)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from helpers import import_graph

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PKG = ROOT / "src" / "gnn_inn"

#: The README is a guide; results and reference details live in docs/.
MAX_README_LINES = 320

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CONFIG_PATH = re.compile(r"(?<![\w./-])configs/[\w./-]+\.ya?ml\b")
TABLE_HEADER = "| part | holds | imports |"


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def broken_links(path: Path) -> list[str]:
    """Relative links (and images) of ``path`` whose file, or anchor in a Markdown file, does
    not exist; external links (``scheme:``) are not followed."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{path.relative_to(ROOT)}: {target} (no heading #{anchor})")
    return bad


# ------------------------------------------------------------------ architecture table
def architecture_table(text: str) -> dict[str, set[str]]:
    """``{part: parts it imports}`` from the README table headed :data:`TABLE_HEADER`.

    A row is ``| `gnn_inn.PART` | what it holds | `a`, `b` |`` (or ``nothing`` in the last
    cell); the root package is written ``gnn_inn``, as a row and as an import."""
    lines = text.splitlines()
    try:
        start = lines.index(TABLE_HEADER)
    except ValueError:
        raise AssertionError(f"README.md: no architecture table headed {TABLE_HEADER!r}") from None
    table: dict[str, set[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 3, f"README.md architecture row has {len(cells)} cells: {line}"
        m = re.fullmatch(r"`gnn_inn(?:\.(\w+))?`", cells[0])
        assert m, f"README.md architecture row does not start with `gnn_inn[.part]`: {line}"
        part = m.group(1) or "gnn_inn"
        assert part not in table, f"README.md architecture table lists {part} twice"
        imports = set(re.findall(r"`([\w.]+)`", cells[2]))
        assert imports or cells[2] == "nothing", f"README.md: unreadable imports cell: {line}"
        table[part] = imports
    return table


def part_of(module: str) -> str:
    """``gnn_inn.training.elbo`` -> ``training``; the root package -> ``gnn_inn``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def part_imports(pkg: Path) -> dict[str, set[str]]:
    """``{part: other parts of the package it imports}``, over every ``import`` statement of
    every module of ``pkg`` (module level or inside a function; relative imports resolved)."""
    out: dict[str, set[str]] = {}
    for mod, deps in import_graph(pkg).items():
        out.setdefault(part_of(mod), set()).update(
            part_of(d) for d in deps if part_of(d) != part_of(mod))
    return out


def table_mismatches(table: dict[str, set[str]], real: dict[str, set[str]]) -> list[str]:
    """What the table gets wrong about ``real`` (both ``{part: imported parts}``)."""
    bad = [f"{p}: a part of gnn_inn missing from the table" for p in sorted(set(real) - set(table))]
    bad += [f"{p}: in the table but not in src/gnn_inn" for p in sorted(set(table) - set(real))]
    for p in sorted(set(table) & set(real)):
        if extra := real[p] - table[p]:
            bad.append(f"{p}: imports {sorted(extra)}, which its row does not list")
        if stale := table[p] - real[p]:
            bad.append(f"{p}: its row lists {sorted(stale)}, which it does not import")
    return bad


# ------------------------------------------------------------------------------ tests
def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, (f"README.md has {n} lines (at most {MAX_README_LINES}): move "
                                   "results to docs/results/ and details to docs/")


def test_relative_links_in_readme_and_docs_resolve():
    bad = [b for path in markdown_files() for b in broken_links(path)]
    assert not bad, "\n".join(bad)


def test_broken_links_are_detected(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Top part\n", encoding="utf-8")
    page = tmp_path / "p.md"
    page.write_text("[ok](a.md#top-part) [gone](b.md) [anchor](a.md#nope) [web](https://x.y)\n"
                    "```\n[in code](c.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["p.md: b.md (no such file)", "p.md: a.md#nope (no heading #nope)"]


def test_readme_links_every_results_page():
    text = README.read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs" / "results").glob("*.md"))
    missing = [p for p in pages if f"(docs/results/{p})" not in text]
    assert not missing, f"docs/results pages the README's results table does not link: {missing}"


def test_config_paths_in_readme_exist():
    paths = CONFIG_PATH.findall(README.read_text(encoding="utf-8"))
    assert "configs/quickstart.yaml" in paths
    missing = sorted({p for p in paths if not (ROOT / p).is_file()})
    assert not missing, f"README.md names configs that do not exist: {missing}"


def test_architecture_check_finds_what_is_wrong(tmp_path):
    text = ("intro\n\n" + TABLE_HEADER + "\n|---|---|---|\n"
            "| `gnn_inn` | root | nothing |\n"
            "| `gnn_inn.data` | graphs, `log\\|det\\|` | nothing |\n"
            "| `gnn_inn.model` | encoder + decoder | `data`, `flows` |\n\nafter\n")
    table = architecture_table(text)
    assert table == {"gnn_inn": set(), "data": set(), "model": {"data", "flows"}}
    pkg = tmp_path / "gnn_inn"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "data" / "__init__.py").write_text("from .io import read\n")
    (pkg / "data" / "io.py").write_text("def read():\n    from ..model import M\n")
    (pkg / "model.py").write_text("from gnn_inn import __version__\nfrom .data import io\n"
                                  "import gnn_inn.cli\n")
    (pkg / "cli.py").write_text("")
    real = part_imports(pkg)
    assert real == {"gnn_inn": set(), "data": {"model"}, "model": {"gnn_inn", "data", "cli"},
                    "cli": set()}
    assert table_mismatches(table, real) == [
        "cli: a part of gnn_inn missing from the table",
        "data: imports ['model'], which its row does not list",
        "model: imports ['cli', 'gnn_inn'], which its row does not list",
        "model: its row lists ['flows'], which it does not import",
    ]


#: Modules of the layout before the registry / variational restructuring; the README's table
#: describes the layout after it, so the check waits until these are gone and registry.py is in.
FORMER_LAYOUT = [PKG / "variational.py", PKG / "experiment.py"]


@pytest.mark.skipif(any(p.exists() for p in FORMER_LAYOUT) or not (PKG / "registry.py").exists(),
                    reason="the Architecture table describes the layout with gnn_inn/registry.py "
                           "and without gnn_inn/variational.py, gnn_inn/experiment.py")
def test_architecture_table_matches_the_imports():
    table = architecture_table(README.read_text(encoding="utf-8"))
    bad = table_mismatches(table, part_imports(PKG))
    assert not bad, "README.md Architecture table vs src/gnn_inn:\n" + "\n".join(bad)


def test_architecture_table_reads():
    table = architecture_table(README.read_text(encoding="utf-8"))
    assert {"gnn_inn", "data", "flows", "encoders", "decoders", "model", "training",
            "evaluation", "cli"} <= set(table)
    # the bottom of the design imports nothing of the project
    assert table["data"] == set() and table["config"] == set()
