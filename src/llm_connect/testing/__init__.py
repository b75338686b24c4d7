"""Test helpers shipped with llm-connect: a mock LLM provider server speaking the real wire formats."""

from .mock_server import FAULTS, MockReply, MockServer, Script, main, run_mock_server, serve

__all__ = ["FAULTS", "MockReply", "MockServer", "Script", "main", "run_mock_server", "serve"]
