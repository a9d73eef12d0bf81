"""The README sends a reader only to files that exist, and its quickstart installs what the
examples use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _exists(name: str) -> bool:
    """A path from the root, or a bare file name (the Layout names files inside their folder)."""
    if (ROOT / name).exists():
        return True
    if "/" in name:
        return False
    return any(
        ".venv" not in p.parts
        for top in ("powerd", "probes", "agent", "scripts")
        for p in (ROOT / top).rglob(name)
    )


def test_files_the_readme_names_exist() -> None:
    named = set(re.findall(r"(?<![\w/])([\w./-]+\.(?:md|py|sh|service|json))\b", README))
    named = {n for n in named if not n.startswith(("/", "<"))}
    assert {"BENCHMARKS.md", "scripts/demo.sh", "powerd/config.py"} <= named
    missing = sorted(n for n in named if not _exists(n))
    assert missing == [], f"README names files the project lacks: {missing}"


def test_readme_layout_lists_every_top_level_folder() -> None:
    layout = README[README.index("## Layout") : README.index("## Development")]
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    folders -= {"reports", "dist", "build", "__pycache__"}
    folders = {f for f in folders if not f.endswith(".egg-info")}
    for folder in sorted(folders):
        assert f"{folder}/" in layout, f"README's Layout does not mention {folder}/"


def test_demo_installs_the_serial_extra() -> None:
    assert "'.[serial]'" in (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8")
