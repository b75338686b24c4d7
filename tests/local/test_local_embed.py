"""local:minilm — all-MiniLM-L6-v2 from its PyPI package, converted to GGUF once and embedded by llama.cpp.

The reference vectors' properties come from sentence-transformers' all-MiniLM-L6-v2: unit length, 384
dimensions, a paraphrase pair far closer than an unrelated pair; token counts are BERT WordPiece's with
[CLS] and [SEP]."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from llm_connect import BudgetTracker, LLMCapabilityError, LLMInvalidRequestError, RunConfig, create_adapter
from llm_connect.usage import UsageTracker

pytestmark = pytest.mark.local
pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

GUITAR = "A man is playing a guitar on stage."
MUSIC = "Someone performs music with a guitar."
STOCKS = "The stock market fell sharply today."


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("embed-home")
    old = os.environ.get("LLM_CONNECT_HOME")
    os.environ["LLM_CONNECT_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LLM_CONNECT_HOME", None)
    else:
        os.environ["LLM_CONNECT_HOME"] = old


@pytest.fixture(scope="module")
def emb(home):
    try:
        return create_adapter("local:minilm")
    except Exception as exc:  # the model package is installed with --no-deps by ./dev setup
        pytest.skip(f"local:minilm is not installed here: {exc}")


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_unit_length_and_close_for_a_paraphrase(emb, home):
    r = emb.embed([GUITAR, MUSIC, STOCKS])
    assert r.provider == "local" and r.model == "minilm" and r.dimensions == 384
    assert all(math.isclose(math.sqrt(dot(v, v)), 1.0, abs_tol=1e-4) for v in r.vectors)
    related, unrelated = dot(r.vectors[0], r.vectors[1]), dot(r.vectors[0], r.vectors[2])
    assert related > 0.6 and unrelated < 0.1, (related, unrelated)
    # WordPiece with [CLS] and [SEP]: "a man is playing a guitar on stage ." is 9 pieces, the others 7 each
    assert r.usage.input_tokens == 11 + 9 + 9 and r.usage.output_tokens == 0
    assert r.cost_usd == 0  # local calls are free
    (gguf,) = (home / "models").glob("minilm-*-f16.gguf")
    assert gguf.stat().st_size < 60_000_000  # f16: about half the packaged fp32 weights


def test_the_same_text_gives_the_same_vector_alone_or_in_a_batch(emb):
    alone = emb.embed(MUSIC).vectors[0]
    batched = emb.embed([GUITAR, MUSIC]).vectors[1]
    assert dot(alone, batched) > 0.9999


async def test_a_long_input_is_cut_at_256_tokens_and_billed_for_those(emb):
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 60)
    r = await emb.aembed([long])
    assert r.usage.input_tokens == 256
    head = await emb.aembed([" ".join(["The quick brown fox jumps over the lazy dog."] * 30)])
    assert dot(r.vectors[0], head.vectors[0]) > 0.99  # past 256 tokens nothing more is read


async def test_budgeted_calls_are_reserved_settled_and_recorded(emb):
    usage, events = UsageTracker(), []
    usage.subscribe(events.append)
    budget = BudgetTracker(total=100)
    cfg = RunConfig(budget_tracker=budget, usage_tracker=usage, tenant_id="acme")
    r = await emb.aembed([GUITAR, STOCKS], cfg)
    assert budget.spent == r.usage.input_tokens == 20 and budget.state().reserved == 0
    (e,) = events
    assert (e.provider, e.model, e.input_tokens, e.output_tokens, e.tenant_id) == ("local", "minilm", 20, 0, "acme")
    assert e.success and not e.estimated


def test_it_only_embeds_and_has_one_size(emb):
    with pytest.raises(LLMCapabilityError, match="embedding model"):
        emb.execute_prompt("hello")
    with pytest.raises(LLMInvalidRequestError, match="dimensions"):
        emb.embed("x", dimensions=128)
    with pytest.raises(LLMCapabilityError, match="local:minilm"):
        create_adapter("local").embed("x")  # the chat model points at the embedding one


def test_two_processes_converting_at_once_both_get_the_model(tmp_path):
    code = "from llm_connect import create_adapter;print(create_adapter('local:minilm').embed('hello').dimensions)"
    env = {**os.environ, "LLM_CONNECT_HOME": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [o[0].strip() for o in outs] == [b"384", b"384"], outs
    assert len(list((tmp_path / "models").glob("*.gguf"))) == 1 and not list((tmp_path / "models").glob("*.tmp"))
