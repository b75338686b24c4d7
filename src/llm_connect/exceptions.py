"""The error tree under the name the seeds use: ``from llm_connect.exceptions import LLMBudgetExceededError``.

Every name here is the very object defined in :mod:`llm_connect.errors` (which draws the tree in its
docstring), so ``except llm_connect.exceptions.LLMError`` and ``except llm_connect.errors.LLMError`` catch
the same errors. Nothing is defined here.
"""

from __future__ import annotations

from . import errors as _errors
from .errors import *  # noqa: F403 - the same objects, by design

__all__ = sorted(_errors.__all__)
