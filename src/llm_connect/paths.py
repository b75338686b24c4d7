"""Where llm-connect keeps its files: ``$LLM_CONNECT_HOME`` or ``~/.local/share/llm-connect``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "default_ledger_url"]


def data_dir() -> Path:
    """The data directory (created on first use)."""
    base = os.environ.get("LLM_CONNECT_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "llm-connect"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_ledger_url() -> str:
    """The usage ledger used when none is configured: an SQLite file in the data directory."""
    return os.environ.get("LLM_CONNECT_LEDGER") or str(data_dir() / "usage.sqlite3")
