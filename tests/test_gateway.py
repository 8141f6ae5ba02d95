"""The gateway on a real websocket on 127.0.0.1: handshake, refusals, streaming,
resume, replay, barge-in, limits, TLS, many sessions, tokens, store, CLI, shutdown."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.aio import cloud_config, gateway_config, run, running_gateway
from support.gateway_proc import GatewayProcess
from support.wire import raw_connect

from glasses_agent.config import GatewayConfig
from glasses_agent.edge.client import EdgeClient
from glasses_agent.errors import BadInputError
from glasses_agent.gateway import MemoryAnswerStore, SqliteAnswerStore, TokenTable
from glasses_agent.gateway.reasoning import BackendError, DelayBackend, ReasoningRequest
from glasses_agent.protocol import (
    PROTOCOL_VERSION,
    AnswerDone,
    CancelQuery,
    CloseCode,
    Facts,
    Keyframe,
    Ping,
    QueryRequest,
    SeenLabel,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
MUG = Facts(labels=(SeenLabel(name="mug", score=0.8),))


class RecordingBackend(DelayBackend):
    """The delay backend, remembering every request it was given."""

    def __init__(self, **kwargs: float | int | str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.requests: list[ReasoningRequest] = []

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        async for delta in super().stream(request):
            yield delta


class FlakyApi:
    """Stands in for a hosted API that rate-limits one query and answers the others."""

    name = "flaky"

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        if "limit" in request.text:
            raise BackendError("429 from the API", code="rate_limited")
        yield "fine"

    async def aclose(self) -> None:
        pass


def test_a_query_streams_deltas_then_done_with_usage_and_timing() -> None:
    backend = RecordingBackend(deltas=3, delay_per_delta_s=0.01)

    async def main() -> None:
        async with running_gateway(backend) as gw:
            raw = await raw_connect(gw.url)
            started = await raw.hello("tok-1")
            assert started["type"] == "session.started" and started["resumed"] is False
            assert started["protocol"] == PROTOCOL_VERSION
            assert started["limits"]["max_queries_in_flight"] == 4
            await raw.send(QueryRequest(query_id="q1", text="what is this", images=1,
                                        facts=MUG))
            await raw.send(Keyframe(query_id="q1", index=0, jpeg=JPEG))
            messages = await raw.recv_until("answer.done")
            deltas = [m for m in messages if m["type"] == "answer.delta"]
            done = messages[-1]
            assert "".join(d["text"] for d in deltas) == done["text"] == "You asked: what is this"
            assert [d["offset"] for d in deltas] == [0, 8, 16]
            assert done["usage"]["completion_tokens"] == 5 and not done["usage"]["estimated"]
            assert 0 < done["timing"]["first_delta_ms"] <= done["timing"]["total_ms"]
            await raw.ws.close()
        request = backend.requests[0]
        assert request.images_jpeg == (JPEG,)
        assert request.facts == MUG

    run(main())


@pytest.mark.parametrize("token, protocol, code, error", [
    ("", PROTOCOL_VERSION, CloseCode.UNAUTHORIZED, "unauthorized"),
    ("wrong", PROTOCOL_VERSION, CloseCode.UNAUTHORIZED, "unauthorized"),
    ("tok-1", PROTOCOL_VERSION + 1, CloseCode.UNSUPPORTED_VERSION, "unsupported_version"),
])
def test_bad_hellos_are_refused_with_the_documented_code(
    token: str, protocol: int, code: int, error: str
) -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            raw = await raw_connect(gw.url)
            reply = await raw.hello(token, protocol=protocol)
            assert (reply["type"], reply["code"], reply["fatal"]) == ("error", error, True)
            assert await raw.closed() == (code, error)

    run(main())


def test_no_hello_and_oversized_messages_are_refused_and_others_go_on() -> None:
    async def main() -> None:
        async with running_gateway(max_message_bytes=32 * 1024) as gw:
            raw = await raw_connect(gw.url)
            await raw.send(Ping(ping_id=1))
            reply = await raw.recv_json()
            assert reply["code"] == "bad_handshake"
            assert await raw.closed() == (CloseCode.BAD_HANDSHAKE, "bad_handshake")

            raw = await raw_connect(gw.url)
            await raw.hello("tok-1")
            await raw.send(QueryRequest(query_id="big", text="x", images=1))
            await raw.send(Keyframe(query_id="big", index=0, jpeg=JPEG * 20))
            code, _ = await raw.closed()
            assert code == CloseCode.MESSAGE_TOO_BIG

            async with EdgeClient(cloud_config(gw.url)) as client:
                assert (await client.ask("still there?").result()).text.endswith("there?")

    run(main())


def test_resume_attaches_to_the_running_answer_without_a_second_run() -> None:
    backend = RecordingBackend(text="one two three four five six", deltas=6,
                               delay_per_delta_s=0.05)

    async def main() -> None:
        async with running_gateway(backend) as gw:
            raw = await raw_connect(gw.url)
            handle = (await raw.hello("tok-1"))["resume_handle"]
            await raw.send(QueryRequest(query_id="q", text="count"))
            first = await raw.recv_json()
            assert first["type"] == "answer.delta"
            raw.ws.transport.abort()  # the link drops mid-answer

            raw = await raw_connect(gw.url)
            started = await raw.hello("tok-1", resume=handle)
            assert started["resumed"] is True
            have = len(first["text"])
            await raw.send(QueryRequest(query_id="q", text="count", resume_from=have))
            messages = await raw.recv_until("answer.done")
            assert all(m["type"] != "answer.reset" for m in messages)
            text = first["text"] + "".join(
                m["text"][have - m["offset"]:] for m in messages if m["type"] == "answer.delta")
            assert text == messages[-1]["text"] == "one two three four five six"
            assert len(backend.requests) == 1 and gw.answers_generated == 1

    run(main())


def test_a_resent_finished_query_is_replayed_from_the_store() -> None:
    backend = RecordingBackend(deltas=2)

    async def main() -> None:
        async with running_gateway(backend) as gw:
            raw = await raw_connect(gw.url)
            await raw.hello("tok-1")
            await raw.send(QueryRequest(query_id="same", text="hello"))
            first = (await raw.recv_until("answer.done"))[-1]
            await raw.ws.close()

            raw = await raw_connect(gw.url)  # a new session of the same device
            await raw.hello("tok-1")
            await raw.send(QueryRequest(query_id="same", text="hello"))
            again = await raw.recv_json()
            assert again["type"] == "answer.done" and again["replayed"] is True
            assert again["text"] == first["text"]

            other = await raw_connect(gw.url)  # another device: its own query ids
            await other.hello("tok-2")
            await other.send(QueryRequest(query_id="same", text="bonjour"))
            assert (await other.recv_until("answer.done"))[-1]["text"] == "You asked: bonjour"
            assert len(backend.requests) == 2

    run(main())


def test_barge_in_cancels_and_records_what_was_heard() -> None:
    store = MemoryAnswerStore(ttl_s=60)

    async def main() -> None:
        backend = DelayBackend(text="a long story " * 10, deltas=20, delay_per_delta_s=0.05)
        async with running_gateway(backend, store=store) as gw:
            raw = await raw_connect(gw.url)
            await raw.hello("tok-1")
            await raw.send(QueryRequest(query_id="story", text="tell me"))
            await raw.recv_json()
            await raw.send(CancelQuery(query_id="story", heard_chars=7))
            done = (await raw.recv_until("answer.done"))[-1]
            assert done["cancelled"] is True and done["heard_chars"] == 7
            assert 0 < len(done["text"]) < len(backend.text)
            stored = await store.get("glasses-1", "story", time.time())
            assert stored is not None and stored.cancelled and stored.heard_chars == 7

    run(main())


def test_backend_errors_end_one_query_and_the_session_goes_on() -> None:
    async def main() -> None:
        async with running_gateway(FlakyApi()) as gw:  # type: ignore[arg-type]
            raw = await raw_connect(gw.url)
            await raw.hello("tok-1")
            await raw.send(QueryRequest(query_id="a", text="over the limit"))
            error = await raw.recv_json()
            assert (error["type"], error["code"], error["query_id"]) == (
                "error", "rate_limited", "a")
            await raw.send(QueryRequest(query_id="b", text="ok"))
            assert (await raw.recv_until("answer.done"))[-1]["text"] == "fine"

    run(main())


def test_queries_over_the_in_flight_limit_are_refused_busy() -> None:
    async def main() -> None:
        backend = DelayBackend(deltas=2, delay_per_delta_s=0.5)
        async with running_gateway(backend, max_queries_in_flight=2) as gw:
            raw = await raw_connect(gw.url)
            assert (await raw.hello("tok-1"))["limits"]["max_queries_in_flight"] == 2
            for qid in ("a", "b", "c"):
                await raw.send(QueryRequest(query_id=qid, text=qid))
            busy = await raw.recv_json()
            assert (busy["code"], busy["query_id"]) == ("busy", "c")

    run(main())


def test_a_second_connection_resuming_the_session_replaces_the_first() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            first = await raw_connect(gw.url)
            handle = (await first.hello("tok-1"))["resume_handle"]
            second = await raw_connect(gw.url)
            assert (await second.hello("tok-1", resume=handle))["resumed"] is True
            assert (await first.recv_json())["code"] == "session_replaced"
            assert (await first.closed())[0] == CloseCode.SESSION_REPLACED
            stranger = await raw_connect(gw.url)  # another device cannot take it over
            assert (await stranger.hello("tok-2", resume=handle))["resumed"] is False

    run(main())


def test_contemplating_queries_are_answered() -> None:
    async def main() -> None:
        backend = DelayBackend(text="Merged.", deltas=2)
        async with running_gateway(backend) as gw:
            async with EdgeClient(cloud_config(gw.url)) as client:
                from glasses_agent.frames import Query

                query = Query(query_id="c1", text="should I buy this?", timestamp_s=0.0,
                              contemplate=True)
                answer = await client.ask(
                    query, facts=Facts(labels=(SeenLabel(name="shoe", score=0.6),))).result()
                assert answer.text.strip()
                # The sub-agents' own counts (scene, knowledge), added up: not an estimate,
                # and none left in the backend (they once piled up there, query after query).
                assert not answer.usage_estimated and answer.completion_tokens == 2
                assert not backend._usage

    run(main())


def test_a_hundred_concurrent_sessions_all_answered() -> None:
    async def main() -> None:
        backend = DelayBackend(deltas=3, delay_per_delta_s=0.01)
        async with running_gateway(backend) as gw:
            clients = [EdgeClient(cloud_config(gw.url, token=f"tok-{i + 1}"))
                       for i in range(100)]
            await asyncio.gather(*(c.start() for c in clients))
            assert gw.sessions == 100
            replies = [c.ask(f"question {i}-{k}") for i, c in enumerate(clients) for k in range(2)]
            answers = await asyncio.gather(*(r.result() for r in replies))
            for reply, answer in zip(replies, answers, strict=True):
                assert answer.query_id == reply.query_id
            assert sorted(a.text for a in answers) == sorted(
                f"You asked: question {i}-{k}" for i in range(100) for k in range(2))
            await asyncio.gather(*(c.aclose() for c in clients))
            assert gw.answers_generated == 200

    run(main(), timeout_s=180)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )

    async def main() -> None:
        config = gateway_config(tls_cert=str(cert), tls_key=str(key))
        async with running_gateway(config=config) as gw:
            assert gw.url.startswith("wss://127.0.0.1:")
            async with EdgeClient(cloud_config(gw.url, ca_file=str(cert))) as client:
                assert (await client.ask("secure?").result()).text == "You asked: secure?"

    run(main())
    with pytest.raises(BadInputError, match="both"):
        from glasses_agent.gateway import server_ssl_context

        server_ssl_context(GatewayConfig(tls_cert=str(cert)))


def test_token_table(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# comment\n\nkitchen-glasses s3cret\nbare-token\n")
    table = TokenTable.from_config(GatewayConfig(tokens_file=str(file), tokens="env-dev envtok"))
    assert len(table) == 3
    assert table.device_for("s3cret") == "kitchen-glasses"
    assert table.device_for("envtok") == "env-dev"
    bare = table.device_for("bare-token")
    assert bare is not None and bare.startswith("device-")
    assert table.device_for("") is None and table.device_for("nope") is None
    with pytest.raises(BadInputError, match="no device tokens"):
        TokenTable.from_config(GatewayConfig())
    with pytest.raises(BadInputError, match="tokens file"):
        TokenTable.from_config(GatewayConfig(tokens_file=str(tmp_path / "missing")))


def test_sqlite_answer_store_keeps_answers_across_a_reopen(tmp_path: Path) -> None:
    async def main() -> None:
        db = tmp_path / "answers.sqlite"
        store = SqliteAnswerStore(db, ttl_s=100)
        answer = AnswerDone(query_id="q", text="kept", completion_tokens=1)
        await store.put("dev", "q", answer, finished_at_s=1000.0)
        await store.aclose()
        store = SqliteAnswerStore(db, ttl_s=100)
        assert await store.get("dev", "q", 1050.0) == answer
        assert await store.get("dev", "q", 1101.0) is None  # expired
        assert await store.expire(1101.0) == 1
        await store.aclose()

    run(main())


def test_cli_without_tokens_is_a_one_line_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "glasses_agent.cli", "--config", "/dev/null", "gateway",
         "--port", "0", "--backend", "delay"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "no device tokens" in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_tells_clients_going_away_and_exits_0(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, settings=("gateway.delay_per_delta_s=0.2",
                                                 "gateway.delay_deltas=50"))
    gateway.start()
    try:
        async def main() -> None:
            async with EdgeClient(cloud_config(gateway.url)) as client:
                reply = client.ask("a long answer please")
                async for _ in reply:
                    break  # streaming has begun
                gateway.terminate()
                await client.wait_for_state(
                    *(s for s in type(client.state) if s is not client.state.CONNECTED),
                    timeout_s=30)
                assert client.last_close == (CloseCode.GOING_AWAY, "going_away")
                reply.cancel()

        run(main())
        assert gateway.proc is not None
        assert gateway.proc.wait(timeout=30) == 0
        assert "stopped" in gateway.read_rest()
    finally:
        gateway.kill()


def test_going_away_message_reaches_a_raw_client() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            raw = await raw_connect(gw.url)
            await raw.hello("tok-1")
            shutdown = asyncio.create_task(gw.shutdown())
            message = await raw.recv_json()
            assert message["type"] == "going_away" and message["reconnect_after_s"] > 0
            assert await raw.closed() == (CloseCode.GOING_AWAY, "going_away")
            await shutdown

    run(main())
