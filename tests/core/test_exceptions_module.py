"""``llm_connect.exceptions`` (the seeds' module name) is the errors tree itself, not a copy of it."""

from __future__ import annotations

import pickle

import pytest

import llm_connect
from llm_connect import errors, exceptions


def test_exceptions_exports_exactly_the_errors_tree_sorted():
    assert exceptions.__all__ == sorted(exceptions.__all__)
    assert exceptions.__all__ == errors.__all__


@pytest.mark.parametrize("name", errors.__all__)
def test_every_name_is_the_same_object_as_in_errors(name):
    assert getattr(exceptions, name) is getattr(errors, name)
    assert getattr(llm_connect, name) is getattr(errors, name)


def test_seed_import_line_and_catching_across_modules():
    from llm_connect.exceptions import LLMBudgetExceededError, LLMError

    assert issubclass(LLMBudgetExceededError, LLMError)
    with pytest.raises(errors.LLMBudgetExceededError) as info:
        raise LLMBudgetExceededError("over the cap", budget_id="b1", requested=10, remaining=3)
    assert (info.value.budget_id, info.value.requested, info.value.remaining) == ("b1", 10, 3)
    with pytest.raises(exceptions.LLMError):
        raise errors.BudgetExhaustedError("thread used up")


def test_an_error_raised_under_one_name_unpickles_as_the_other():
    err = exceptions.LLMBudgetExceededError("no room", budget_id="t/1", remaining=0)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.LLMBudgetExceededError and back.budget_id == "t/1"
