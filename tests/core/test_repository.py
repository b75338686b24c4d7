"""The tree itself: no merge left half done, no module past the size a reader can hold."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: a conflict marker at the start of a line, as git writes them
MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> |=======$)", re.MULTILINE)


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_file_holds_a_merge_conflict_marker() -> None:
    found = []
    for path in _tracked():
        if path.suffix in {".png", ".gguf", ".ico"} or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:  # binary
            continue
        for m in MARKER.finditer(data):
            # a Markdown setext heading underline is "=======" too: only a marker beside its pair counts
            if m.group(1) == b"=======" and b"\n<<<<<<< " not in data and not data.startswith(b"<<<<<<< "):
                continue
            line = data.count(b"\n", 0, m.start()) + 1
            found.append(f"{path.relative_to(ROOT)}:{line}")
    assert not found, f"merge conflict markers: {found}"


def test_modules_stay_readable() -> None:
    """A module past ~800 lines is two modules: split it where the code shows the cut."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "src").rglob("*.py")
        if (n := p.read_text(encoding="utf-8").count("\n")) > 850
    }
    assert not long, long
