"""Test helpers shipped with llm-connect: a mock LLM provider server speaking the real wire formats, and
``FakeBackend``, seed 004's canned-output backend (for code taking an ``LLMBackend``, and for agent runtimes).
"""

from ._bedrock import MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY
from .fake_backend import FakeBackend, FakeCall
from .mock_server import FAULTS, MockReply, MockServer, Script, main, run_mock_server, serve

__all__ = [
    "FAULTS",
    "MOCK_AWS_ACCESS_KEY_ID",
    "MOCK_AWS_SECRET_ACCESS_KEY",
    "FakeBackend",
    "FakeCall",
    "MockReply",
    "MockServer",
    "Script",
    "main",
    "run_mock_server",
    "serve",
]
