"""Any OpenAI-compatible chat-completions server: vLLM, llama.cpp's server, Ollama, hosted APIs.

``POST {base_url}/chat/completions`` with ``"stream": true``; the answer comes
back as server-sent events (``data: {json}`` lines, ended by ``data: [DONE]``)
and each ``choices[0].delta.content`` is yielded as it arrives. The API key is
read from the environment variable named by ``[openai] api_key_env`` (never
from a file); with no key set, no ``Authorization`` header is sent (local
servers need none). Keyframes go along as ``image_url`` parts (``data:`` URLs)
when ``[openai] send_images`` is on. A server whose model takes no images
(llama.cpp's server with a text model answers HTTP 200 and an empty, unfinished
stream) fails such a request before any text: it is sent again as text only,
and once that works the backend sends text only from then on (with a warning).

A stream must end with ``data: [DONE]`` or a choice with a ``finish_reason``;
one that just stops is a failure (``backend_failed``), not an empty answer.

Every failure is a ``BackendError`` with a code the edge can act on:

======================  ==============================================================
``rate_limited``        HTTP 429; the message carries the server's Retry-After
``backend_unavailable`` cannot connect; HTTP 401/403 (key), 404 (URL or model name)
``backend_timeout``     no answer within ``timeout_s``; a stream silent for
                        ``stall_timeout_s``
``backend_failed``      HTTP 5xx and other statuses; a malformed or unfinished stream
======================  ==============================================================
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from glasses_agent.config import Config, OpenAIConfig
from glasses_agent.gateway.prompts import build_messages
from glasses_agent.gateway.reasoning import BackendError, ReasoningRequest, Usage

__all__ = ["OpenAIBackend", "RateLimitedError", "create", "parse_retry_after_s"]

logger = logging.getLogger(__name__)


_DEFAULT = OpenAIConfig()


class RateLimitedError(BackendError):
    """HTTP 429. ``retry_after_s``: what the server asked for (None if it did not say)."""

    def __init__(self, message: str, *, retry_after_s: float | None) -> None:
        super().__init__(message, code="rate_limited")
        self.retry_after_s = retry_after_s


def parse_retry_after_s(value: str | None, *, now_s: float) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (``now_s``: Unix time)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_s)


def _server_message(response: httpx.Response) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the start of the body."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])[:200]
        if isinstance(error, str):
            return error[:200]
    return " ".join(text.split())[:200]


class OpenAIBackend:
    """Streams chat completions from one OpenAI-compatible server."""

    name = "openai"

    def __init__(
        self,
        config: OpenAIConfig = _DEFAULT,
        *,
        api_key: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise BackendError(
                f"openai.base_url must start with http:// or https://, got {config.base_url!r}",
                code="backend_unavailable",
            )
        for key in ("timeout_s", "stall_timeout_s"):
            if getattr(config, key) <= 0:
                raise BackendError(f"openai.{key} must be > 0, got {getattr(config, key)}")
        self.config = config
        self._api_key = api_key
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s),
            transport=transport,
        )
        self._usage: dict[str, Usage] = {}
        # False once the server has shown that it answers only without image parts.
        self.images_ok = config.send_images

    def request_body(self, request: ReasoningRequest, *, images: bool | None = None
                     ) -> dict[str, Any]:
        """The JSON body sent for ``request`` (``images``: default ``send_images``)."""
        return {
            "model": self.config.model,
            "messages": build_messages(
                request, images=self.config.send_images if images is None else images),
            "max_tokens": request.max_tokens,
            "temperature": self.config.temperature,
            "stream": True,
        }

    def _status_error(self, response: httpx.Response) -> BackendError:
        status = response.status_code
        detail = _server_message(response)
        where = self.config.base_url
        if status == 429:
            retry = parse_retry_after_s(response.headers.get("retry-after"), now_s=time.time())
            when = f"retry after {retry:g} s" if retry is not None else "no Retry-After given"
            return RateLimitedError(
                f"rate limited by {where} (HTTP 429, {when}): {detail}", retry_after_s=retry
            )
        if status in (401, 403):
            return BackendError(
                f"{where} refused the API key (HTTP {status}): set ${self.config.api_key_env}"
                f" to a valid key ({detail})",
                code="backend_unavailable",
            )
        if status == 404:
            return BackendError(
                f"{where}: not found (HTTP 404): check openai.base_url (it usually ends in /v1)"
                f" and openai.model {self.config.model!r} ({detail})",
                code="backend_unavailable",
            )
        if status >= 500:
            return BackendError(f"{where} failed (HTTP {status}): {detail}")
        return BackendError(f"{where} refused the request (HTTP {status}): {detail}")

    async def _lines(self, response: httpx.Response) -> AsyncIterator[str]:
        """The response's lines; a gap longer than ``stall_timeout_s`` is a stall."""
        lines = response.aiter_lines()
        stall_s = self.config.stall_timeout_s
        while True:
            try:
                async with asyncio.timeout(stall_s):
                    line = await anext(lines)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise BackendError(
                    f"{self.config.base_url}: the answer stream stalled"
                    f" (nothing for {stall_s:g} s)",
                    code="backend_timeout",
                ) from None
            yield line

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        with_images = self.images_ok and bool(request.images_jpeg)
        body = self.request_body(request, images=with_images)  # a bad keyframe fails here
        said = False
        try:
            async for delta in self._stream(body, request.query_id):
                said = True
                yield delta
            return
        except BackendError as exc:
            if not with_images or said or exc.code != "backend_failed":
                raise
            logger.warning("%s failed a request with %d image(s) (%s); sending it as text only",
                           self.config.base_url, len(request.images_jpeg), exc)
        async for delta in self._stream(self.request_body(request, images=False),
                                        request.query_id):
            if self.images_ok:
                self.images_ok = False
                logger.warning("%s answers only without images: keyframes are not sent to it "
                               "from now on (set openai.send_images = false to say so)",
                               self.config.base_url)
            yield delta

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        """POST ``body``; the response once its headers are in (the body streams)."""
        request = self._client.build_request("POST", "chat/completions", json=body)
        try:
            return await self._client.send(request, stream=True)
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # Nothing came back: most likely a kept-alive connection that the server had
            # just closed (uvicorn closes idle ones after 5 s). Once more, on a new one.
            logger.info("%s: %s before any answer; sending again", self.config.base_url,
                        type(exc).__name__)
            return await self._client.send(request, stream=True)

    async def _stream(self, body: dict[str, Any], query_id: str) -> AsyncIterator[str]:
        where = self.config.base_url
        finished = False
        try:
            response = await self._send(body)
            try:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response)
                async for line in self._lines(response):
                    line = line.strip()
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    payload = line[len("data:"):].strip()
                    if payload == "[DONE]":
                        return
                    delta, ended = self._delta(payload, query_id)
                    finished = finished or ended
                    if delta:
                        yield delta
            finally:
                await response.aclose()
            if not finished:
                raise BackendError(f"{where}: the answer stream ended unfinished (no [DONE] "
                                   "and no finish_reason): the server failed mid-answer?")
        except httpx.ConnectError as exc:
            raise BackendError(
                f"cannot reach {where}: {exc or type(exc).__name__}", code="backend_unavailable"
            ) from exc
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"{where} did not answer within {self.config.timeout_s:g} s "
                f"({type(exc).__name__})",
                code="backend_timeout",
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def _delta(self, payload: str, query_id: str) -> tuple[str, bool]:
        """(the content of one event, whether it ends the answer)."""
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise BackendError(
                f"{self.config.base_url} sent a malformed event: {payload[:120]!r}"
            ) from exc
        if not isinstance(event, Mapping):
            raise BackendError(f"{self.config.base_url} sent a malformed event: {payload[:120]!r}")
        if "error" in event:
            error = event["error"]
            message = error.get("message", error) if isinstance(error, Mapping) else error
            raise BackendError(f"{self.config.base_url} failed mid-answer: {message}")
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            self._usage[query_id] = Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        choices = event.get("choices") or []
        if not choices or not isinstance(choices[0], Mapping):
            return "", False
        delta = choices[0].get("delta") or {}
        content = delta.get("content") if isinstance(delta, Mapping) else None
        ended = bool(choices[0].get("finish_reason"))
        return (content if isinstance(content, str) else ""), ended

    def pop_usage(self, query_id: str) -> Usage | None:
        """Token counts, when the server reported them in the stream."""
        return self._usage.pop(query_id, None)

    async def aclose(self) -> None:
        await self._client.aclose()
        self._usage.clear()


def create(config: Config, *, environ: Mapping[str, str] | None = None) -> OpenAIBackend:
    """The factory ``make_backend`` calls for ``[gateway] backend = "openai"``."""
    environ = os.environ if environ is None else environ
    return OpenAIBackend(config.openai, api_key=environ.get(config.openai.api_key_env, ""))
