"""``python -m llm_connect.testing --port N``: the mock provider server."""

from .mock_server import main

raise SystemExit(main())
