"""The README's layout section names the tree's files, file for file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The rooms whose every file the layout names (tests/ by its shared modules).
ROOMS = ("services/", "shared/", "devstack/")


def _layout() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout\n") :]
    start = section.index("```\n") + 4
    return section[start : section.index("```\n", start)].splitlines()


def _named() -> set[str]:
    """Every path the layout names: file lines under their room, and files a room line lists."""
    named: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, directory) of the enclosing lines
    for line in _layout():
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        name, _, description = line.strip().partition(" ")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (stack[-1][1] if stack else "") + name
        if name.endswith("/"):
            stack.append((indent, path))
            # A room line may list its few files in its description.
            named.update(path + f for f in re.findall(r"(?<![\w/.-])[\w.-]+\.\w+", description))
        else:
            named.add(path)
    return named


def _tracked() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", *ROOMS, "tests/"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = set()
    for path in out:
        p = Path(path)
        if p.name == "__init__.py" and len((ROOT / p).read_text().splitlines()) <= 1:
            continue  # an empty package marker is not a file a newcomer needs told about
        if path.startswith("tests/") and (len(p.parts) > 2 or p.suffix != ".py"):
            continue  # tests/ is named by its shared modules; the tiers by their folders
        files.add(path)
    return files


def test_every_file_of_the_product_and_tooling_rooms_is_in_the_layout() -> None:
    named = _named()
    missing = sorted(f for f in _tracked() if f not in named)
    assert missing == [], f"README's layout does not name: {missing}"


def test_every_file_the_layout_names_exists() -> None:
    ghosts = sorted(p for p in _named() if not (ROOT / p).exists())
    assert ghosts == [], f"README's layout names what is not there: {ghosts}"
