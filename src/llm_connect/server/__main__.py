"""``python -m llm_connect.server [--config FILE] [--host H] [--port P] [--workers N]`` (seed FR-1)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llm_connect.server", description="Run the llm-connect gateway.")
    p.add_argument("--config", "-c", default=None, help="YAML config (default: $LLM_CONNECT_CONFIG or embedded)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", "-p", type=int, default=None)
    p.add_argument("--workers", "-w", type=int, default=None)
    p.add_argument("--log-level", default=None)
    args = p.parse_args(argv)
    from .app import serve

    serve(args.config, args.host, args.port, args.workers, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
