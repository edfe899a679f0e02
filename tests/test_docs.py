"""The docs hold: links point inside the repository, the figures table comes from docs/figures.py."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import figures  # noqa: E402


def test_readme_links_point_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith(("http://", "https://")):
            assert not target.startswith(".."), f"README links outside the repository: {target}"
            assert (ROOT / target).exists(), f"README links to a missing file: {target}"
    assert "](docs/ARCHITECTURE.md)" in readme


def test_architecture_names_only_paths_that_exist():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for path in re.findall(r"`((?:snnir|backends|frontends|examples|tests|docs)/[\w/.]+)`", text):
        assert (ROOT / path).exists() or (ROOT / path.rstrip("/")).exists(), path


def test_figures_block_is_generated_and_rewritable(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(figures.BEGIN):readme.index(figures.END) + len(figures.END)]
    for command in re.findall(r"\| `([^`]+)` \|", block):
        script = next(part for part in command.split() if part.endswith(".py"))
        assert (ROOT / script).exists(), command
    copy = tmp_path / "README.md"
    copy.write_text(readme)
    new = figures.table([("python examples/x.py", "accuracy", "99.0%")])
    figures.write_readme(new, copy)
    text = copy.read_text()
    assert new in text and text.replace(new, block) == readme
