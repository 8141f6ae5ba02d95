"""The ``openai`` backend against a real OpenAI-compatible server, and a fake one for failures.

The real one is llama-cpp-python's server with the embedded SmolLM2 model, on
loopback, started once for this module. The fake one (``FakeServer``) stands in
for a hosted API's failure cases only (429, 500, 401, stalled and slow streams):
a tiny HTTP/1.1 server on loopback that httpx talks to over a real socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from support.net import free_port

from glasses_agent.config import Config, ContemplateConfig, OpenAIConfig
from glasses_agent.gateway.backends.openai import (
    OpenAIBackend,
    RateLimitedError,
    create,
    parse_retry_after_s,
)
from glasses_agent.gateway.contemplate import contemplate
from glasses_agent.gateway.reasoning import BackendError, ReasoningRequest, make_backend
from glasses_agent.protocol import Facts, Location, SeenBarcode, SeenLabel

JPEG = b"\xff\xd8\xff\xe0" + b"\x10" * 32
SIGN = Facts(text=("EXIT 12", "Main Street"))


def collect(config: OpenAIConfig, request: ReasoningRequest) -> list[str]:
    """A fresh backend's answer (one event loop for the client's whole life)."""
    async def run() -> list[str]:
        backend = OpenAIBackend(config)
        try:
            return [delta async for delta in backend.stream(request)]
        finally:
            await backend.aclose()

    return asyncio.run(run())


# --- a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server", reason="pip install 'glasses-agent[llm-server]'")
    from glasses_agent.config import LocalLlmConfig
    from glasses_agent.gateway.backends.local import resolve_model_path

    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model",
        str(resolve_model_path(LocalLlmConfig())), "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "1", "--verbose", "false",
        # By default this server cuts off a streaming answer when the next request comes:
        # parallel sub-agents would silently get empty answers. Queue them instead.
        "--interrupt_requests", "false",
    ]
    # A file, not a pipe: the server logs far more than a pipe buffer holds.
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"

    def tail() -> str:
        return log_path.read_text(errors="replace")[-2000:]

    try:
        deadline = time.monotonic() + 120.0  # generous: a loaded 2-core machine
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {tail()}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer /v1/models in 120 s: {tail()}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def real_config(base_url: str) -> OpenAIConfig:
    # Generous limits: correctness is tested here, not speed, on a possibly loaded machine.
    return OpenAIConfig(base_url=base_url, temperature=0.0, send_images=False,
                        timeout_s=240.0, stall_timeout_s=240.0)


def test_real_server_streams_a_grounded_answer(llama_server: str) -> None:
    async def run() -> list[str]:
        backend = OpenAIBackend(real_config(llama_server))
        try:
            request = ReasoningRequest(query_id="q", text="what does the sign say?", facts=SIGN,
                                       max_tokens=32)
            return [delta async for delta in backend.stream(request)]
        finally:
            await backend.aclose()

    deltas = asyncio.run(run())
    assert len(deltas) >= 3  # streamed, not one block
    assert "Main Street" in "".join(deltas)


def test_real_server_through_make_backend(llama_server: str) -> None:
    base = Config()
    config = dataclasses.replace(
        base,
        gateway=dataclasses.replace(base.gateway, backend="openai"),
        openai=real_config(llama_server),
    )

    async def run() -> str:
        backend = make_backend(config)
        try:
            assert backend.name == "openai"
            request = ReasoningRequest(query_id="q", text="What is the capital of France?",
                                       max_tokens=12)
            return "".join([delta async for delta in backend.stream(request)])
        finally:
            await backend.aclose()

    assert "Paris" in asyncio.run(run())


class Recording(OpenAIBackend):
    """The real backend, noting which requests it streamed."""

    seen: list[str]

    def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        self.seen.append(request.query_id)
        return super().stream(request)


def test_real_server_contemplating_with_a_model_merge(llama_server: str) -> None:
    backend = Recording(real_config(llama_server))
    backend.seen = []

    async def run() -> str:
        try:
            request = ReasoningRequest(
                query_id="c", text="should I take this exit to get to Main Street?",
                facts=dataclasses.replace(SIGN, labels=(SeenLabel(name="street sign", score=0.8),)),
                max_tokens=48,
            )
            config = ContemplateConfig(token_budget=32, timeout_s=240.0)
            return "".join([d async for d in contemplate(backend, request, config)])
        finally:
            await backend.aclose()

    answer = asyncio.run(run())
    assert answer.strip()
    # Three sub-agents, then one merge call (auto picks a model merge for "openai").
    assert sorted(backend.seen) == ["c#knowledge", "c#merge", "c#reader", "c#scene"]
    assert backend.seen[-1] == "c#merge"


def test_real_server_with_a_text_only_model_still_answers_a_query_with_a_keyframe(
    llama_server: str,
) -> None:
    # llama.cpp's server cannot put image parts in SmolLM2's chat template: it answers
    # HTTP 200 and an empty, unfinished stream. Once that answered "" (an empty answer).
    config = dataclasses.replace(real_config(llama_server), send_images=True)
    request = ReasoningRequest(query_id="k", text="what does the sign say?", facts=SIGN,
                               images_jpeg=(JPEG,), max_tokens=24)

    async def run() -> tuple[str, bool, str]:
        backend = OpenAIBackend(config)
        try:
            first = "".join([d async for d in backend.stream(request)])
            images_ok = backend.images_ok
            again = "".join([d async for d in backend.stream(request)])
            return first, images_ok, again
        finally:
            await backend.aclose()

    first, images_ok, again = asyncio.run(run())
    # Answered, not "" (what it says is the model's: LLM text differs run to run, and from
    # one CPU's kernels to another's; grounding is tested in test_real_server_streams_...).
    assert first.strip()
    assert not images_ok  # learned: later queries go as text only, at once
    assert again.strip()


def test_real_server_wrong_path_is_a_clear_404(llama_server: str) -> None:
    config = real_config(llama_server.removesuffix("/v1") + "/nope")
    with pytest.raises(BackendError, match="HTTP 404.*base_url") as info:
        collect(config, ReasoningRequest(query_id="q", text="hi", max_tokens=4))
    assert info.value.code == "backend_unavailable"


# --- a fake hosted API for the failure cases ----------------------------------------------

Handler = Callable[[dict[str, Any], asyncio.StreamWriter], Awaitable[None]]


@dataclasses.dataclass
class FakeServer:
    """A minimal HTTP/1.1 server on loopback: each request goes to ``handler``."""

    handler: Handler
    requests: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    closed_by_client: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = {"line": lines[0], "headers": headers, "json": json.loads(body or b"{}"),
                       "reader": reader, "server": self}
            self.requests.append(request)
            await self.handler(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_client.set()
        finally:
            writer.close()


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[tuple[FakeServer, str]]:
    fake = FakeServer(handler)
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield fake, f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


def respond(status: int, body: bytes, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}"
                     "Content-Type: application/json\r\n\r\n".encode() + body)
        await writer.drain()

    return handler


def event(content: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": content}}]}).encode() + b"\n\n"


def sse(chunks: list[bytes], *, then_wait_s: float = 0.0) -> Handler:
    async def handler(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for chunk in chunks:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        if then_wait_s:
            # Hold the stream open; a client that hangs up shows as end-of-file here.
            reader: asyncio.StreamReader = request["reader"]
            try:
                if await asyncio.wait_for(reader.read(1), then_wait_s) == b"":
                    request["server"].closed_by_client.set()
                    return
            except TimeoutError:
                pass
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return handler


def run_fake(handler: Handler, config: dict[str, Any] | None = None,
             request: ReasoningRequest | None = None, api_key: str = "",
             ) -> tuple[list[str] | BaseException, FakeServer]:
    async def run() -> tuple[list[str] | BaseException, FakeServer]:
        async with fake_server(handler) as (fake, url):
            backend = OpenAIBackend(OpenAIConfig(base_url=url, **(config or {})), api_key=api_key)
            try:
                req = request or ReasoningRequest(query_id="q", text="hello", max_tokens=8)
                return [d async for d in backend.stream(req)], fake
            except BaseException as exc:  # returned for the test to inspect
                return exc, fake
            finally:
                await backend.aclose()

    return asyncio.run(run())


def test_streams_sse_with_comments_crlf_and_done() -> None:
    body = [b": keep-alive\n\n", event("Hel"), b"event: ping\n\n",
            event("lo").replace(b"\n", b"\r\n"), b'data: {"choices": []}\n\n',
            b'data: {"choices":[{"delta":{}}]}\n\n',
            b"data: [DONE]\n\n", event("IGNORED AFTER DONE")]
    got, fake = run_fake(sse(body), api_key="sk-test")
    assert got == ["Hel", "lo"]
    request = fake.requests[0]
    assert request["line"].startswith("POST /v1/chat/completions ")
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert request["json"]["stream"] is True and request["json"]["max_tokens"] == 8


def test_usage_is_kept_when_the_server_reports_it() -> None:
    body = [event("ok"), b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}'
            b"\n\n", b"data: [DONE]\n\n"]

    async def run() -> Any:
        async with fake_server(sse(body)) as (_, url):
            backend = OpenAIBackend(OpenAIConfig(base_url=url))
            try:
                [d async for d in backend.stream(ReasoningRequest(query_id="u", text="hi"))]
                return backend.pop_usage("u")
            finally:
                await backend.aclose()

    usage = asyncio.run(run())
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 2)


def test_no_key_no_authorization_header_and_images_as_data_urls() -> None:
    request = ReasoningRequest(query_id="q", text="what is this?", facts=SIGN,
                               images_jpeg=(JPEG,))
    got, fake = run_fake(sse([event("A sign."), b"data: [DONE]\n\n"]), request=request)
    assert got == ["A sign."]
    sent = fake.requests[0]
    assert "authorization" not in sent["headers"]
    user = sent["json"]["messages"][-1]["content"]
    assert user[0]["type"] == "text"
    assert 'Camera sees text: "EXIT 12 / Main Street"' in user[0]["text"]
    assert user[1]["type"] == "image_url"
    assert user[1]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    # send_images off: the same query goes as plain text.
    _, fake = run_fake(sse([b"data: [DONE]\n\n"]), request=request, config={"send_images": False})
    assert isinstance(fake.requests[0]["json"]["messages"][-1]["content"], str)


def test_a_keyframe_that_is_not_a_jpeg_is_refused() -> None:
    request = ReasoningRequest(query_id="q", text="what is this?", images_jpeg=(b"GIF89a",))
    got, _ = run_fake(sse([b"data: [DONE]\n\n"]), request=request)
    assert isinstance(got, BackendError) and "not a JPEG" in str(got)


def test_429_is_rate_limited_with_retry_after() -> None:
    body = b'{"error": {"message": "Rate limit reached for requests"}}'
    got, _ = run_fake(respond(429, body, {"Retry-After": "7"}))
    assert isinstance(got, RateLimitedError)
    assert got.code == "rate_limited" and got.retry_after_s == 7.0
    assert "retry after 7 s" in str(got) and "Rate limit reached" in str(got)


def test_retry_after_as_a_date_or_missing() -> None:
    assert parse_retry_after_s("Wed, 21 Oct 2015 07:28:30 GMT", now_s=1445412500.0) == 10.0
    assert parse_retry_after_s("soon", now_s=0.0) is None
    assert parse_retry_after_s(None, now_s=0.0) is None
    got, _ = run_fake(respond(429, b"slow down"))
    assert isinstance(got, RateLimitedError) and "no Retry-After" in str(got)


def test_500_and_401_are_clear() -> None:
    got, _ = run_fake(respond(500, b'{"error": {"message": "model crashed"}}'))
    assert isinstance(got, BackendError) and got.code == "backend_failed"
    assert "HTTP 500" in str(got) and "model crashed" in str(got)
    got, _ = run_fake(respond(401, b'{"error": "bad key"}'))
    assert isinstance(got, BackendError) and got.code == "backend_unavailable"
    assert "$OPENAI_API_KEY" in str(got)


def test_a_stalled_stream_is_cut_off() -> None:
    got, fake = run_fake(sse([event("It is")], then_wait_s=30.0),
                         config={"stall_timeout_s": 0.3})
    assert isinstance(got, BackendError) and got.code == "backend_timeout"
    assert "stalled" in str(got)


def test_a_server_that_never_answers_times_out() -> None:
    async def silent(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30.0)

    got, _ = run_fake(silent, config={"timeout_s": 0.3})
    assert isinstance(got, BackendError) and got.code == "backend_timeout"
    assert "did not answer within 0.3 s" in str(got)


def test_nothing_listening_is_unavailable() -> None:
    port = free_port()
    config = OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(BackendError, match="cannot reach") as info:
        collect(config, ReasoningRequest(query_id="q", text="hi"))
    assert info.value.code == "backend_unavailable"


def test_malformed_and_error_events() -> None:
    got, _ = run_fake(sse([b"data: {not json\n\n"]))
    assert isinstance(got, BackendError) and "malformed event" in str(got)
    got, _ = run_fake(sse([event("Par"), b'data: {"error": {"message": "overloaded"}}\n\n']))
    assert isinstance(got, BackendError) and "mid-answer: overloaded" in str(got)
    # A stream that just stops (no [DONE], no finish_reason) is a failure, not an answer.
    got, _ = run_fake(sse([event("Half an ans")]))
    assert isinstance(got, BackendError) and got.code == "backend_failed"
    assert "unfinished" in str(got)
    finish = b'data: {"choices":[{"delta":{"content":"Done."},"finish_reason":"stop"}]}\n\n'
    assert run_fake(sse([finish]))[0] == ["Done."]


def test_cancelling_closes_the_connection() -> None:
    async def run() -> bool:
        async with fake_server(sse([event("one")], then_wait_s=30.0)) as (fake, url):
            backend = OpenAIBackend(OpenAIConfig(base_url=url))
            first = asyncio.Event()

            async def consume() -> None:
                async for _ in backend.stream(ReasoningRequest(query_id="q", text="hi")):
                    first.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), 10.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The connection is closed at once, not left to finish the answer.
            await asyncio.wait_for(fake.closed_by_client.wait(), 10.0)
            await backend.aclose()
            return fake.closed_by_client.is_set()

    assert asyncio.run(run())


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="must start with http"):
        OpenAIBackend(OpenAIConfig(base_url="127.0.0.1:8080/v1"))
    with pytest.raises(BackendError, match="stall_timeout_s must be > 0"):
        OpenAIBackend(OpenAIConfig(stall_timeout_s=0))


def test_create_reads_the_key_from_the_named_variable() -> None:
    config = dataclasses.replace(Config(), openai=OpenAIConfig(api_key_env="MY_KEY"))
    backend = create(config, environ={"MY_KEY": "sk-from-env", "OPENAI_API_KEY": "other"})
    assert backend._client.headers["authorization"] == "Bearer sk-from-env"
    asyncio.run(backend.aclose())
    backend = create(config, environ={})
    assert "authorization" not in backend._client.headers
    asyncio.run(backend.aclose())


def test_prompt_puts_the_facts_first_in_words_a_small_model_copes_with() -> None:
    from glasses_agent.gateway.prompts import MAX_FACTS_CHARS, user_prompt

    facts = Facts(
        text=("EXIT 12", "Main Street"),
        barcodes=(SeenBarcode(type="QR code", data="https://example.com"),
                  SeenBarcode(type="EAN-13", data="7310865004703")),
        labels=(SeenLabel(name="street sign", score=0.8), SeenLabel(name="traffic light",
                                                                    score=0.3)),
        center_labels=(SeenLabel(name="signpost", score=0.6),
                       SeenLabel(name="street sign", score=0.5)),
        location=Location(lat=51.5, lon=-0.12),
        people_in_view=2,
        local_time="2026-11-03T14:05:00+01:00",
        intent="other",
        extra={"depth_estimate": "the wall is 2 m away"},
    )
    prompt = user_prompt(ReasoningRequest(query_id="q", text="  where  am I? ", facts=facts))
    assert prompt.splitlines() == [
        'Camera sees text: "EXIT 12 / Main Street"',
        "Camera sees a barcode: QR code https://example.com",
        "Camera sees a barcode: EAN-13 7310865004703",
        "Camera sees objects: signpost, street sign, traffic light",
        "People in view: 2",
        "Location: latitude 51.5, longitude -0.12",
        "Local time: Tuesday, 3 November 2026, 2:05 PM",
        "Depth estimate: the wall is 2 m away",
        "Question: where am I?",
    ]
    huge = user_prompt(ReasoningRequest(
        query_id="q", text="hi", facts=Facts(extra={f"k{i}": "x" * 250 for i in range(40)})))
    assert len(huge) < MAX_FACTS_CHARS + 100
    assert huge.endswith("Question: hi")
