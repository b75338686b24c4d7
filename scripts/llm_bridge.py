#!/usr/bin/env python3
"""The seed's bridge path: ``python3 scripts/llm_bridge.py [config.yaml] < request.json > response.json``.

Same as ``llm-connect bridge``: one JSON request on stdin, one JSON response on stdout, non-zero exit on error.
"""

import os
import sys

if __name__ == "__main__":
    try:
        from llm_connect.server.bridge import main
    except ImportError:  # running from a source checkout without installing
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
        from llm_connect.server.bridge import main
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLM_CONNECT_CONFIG")))
