"""What gateway replicas share, in Redis: one round trip per decision, keys per device.

Every key of a device carries the same Redis Cluster hash tag (``{`` 16 hex digits of
the device id's SHA-256 ``}``), so a device's keys live on one shard and each Lua
script below touches one shard only; device ids never appear in key names as such.

=======================  =======  ================================================
key (``ga:{dev}:...``)   type     what
=======================  =======  ================================================
``ans:<query id>``       string   the query's ``answer.done`` (JSON), ``answer_ttl_s``
``lease:<query id>``     string   "<replica> <session id>" generating it, ``lease_s``
``text:<query id>``      stream   the running answer: ``t``/``o`` entries (text,
                                  offset), then ``done`` (JSON) or ``err``; a
                                  ``reset`` entry opens a regeneration, ``gone``
                                  says the generator gave the query up
``busy``                 zset     query ids being generated, scored by lease expiry
``rate``                 hash     the device's token bucket (``tokens``, ``at`` ms)
``cancel:<query id>``    string   heard characters of a barge-in taken on another replica
``sess:<sha256(handle)>`` hash    session id, device, last seen, holding replica
=======================  =======  ================================================

Times inside scripts are Redis's own (``TIME``), so replicas' clocks never disagree.
A resume handle is stored only as its hash, under the device that presented the
token: a handle from another device, or a made-up one, finds nothing.

Every method raises what the Redis client raises (``redis.exceptions.RedisError``,
``OSError``, ``TimeoutError``); ``shared.SharedState`` turns that into degraded mode.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from glasses_agent.errors import BadInputError
from glasses_agent.protocol import AnswerDone, ProtocolError

__all__ = ["Claim", "RedisState", "SessionRecord", "StreamEntry", "device_tag"]

# A finished answer's stream stays readable this long (a follower may still be reading), ms.
STREAM_KEEP_MS = 60_000
# A barge-in flag for the generating replica lives this long, s.
CANCEL_KEEP_S = 60
# Connections to Redis per replica. A command waits for a free one rather than fail: each
# takes well under a millisecond, and the streams followed share one (``follower``).
MAX_CONNECTIONS = 32

_CLAIM = """
local done = redis.call('GET', KEYS[1])
if done then return {'answered', done} end
local owner = redis.call('GET', KEYS[2])
if owner then return {'running', owner} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[2])
local takeover = ARGV[6] == '1'
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not takeover then
  local n = redis.call('ZCARD', KEYS[3])
  if n >= tonumber(ARGV[3]) then return {'busy', tostring(n)} end
  local rate, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
  local b = redis.call('HMGET', KEYS[4], 'tokens', 'at')
  local tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then return {'rate_limited', tostring((1 - tokens) / rate)} end
  redis.call('HSET', KEYS[4], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[4], math.ceil(burst / rate) + 1000)
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', lease_ms)
redis.call('ZADD', KEYS[3], now + lease_ms, ARGV[7])
redis.call('PEXPIRE', KEYS[3], lease_ms + 60000)
local existed = redis.call('DEL', KEYS[5])
if takeover or existed == 1 then redis.call('XADD', KEYS[5], '*', 'reset', '1') end
return {'claimed', ''}
"""

_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('XADD', KEYS[2], '*', 't', ARGV[2], 'o', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return redis.call('EXISTS', KEYS[3])
"""

_FINISH = """
local kept = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX')
local stored = ARGV[2]
if not kept then stored = redis.call('GET', KEYS[1]) or ARGV[2] end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('XADD', KEYS[4], '*', 'done', stored)
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
return stored
"""

_END = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], '*', ARGV[3], ARGV[4], 'msg', ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
return 1
"""

_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
if not owner then
  -- Ended meanwhile (a renewal sent before the end reached Redis after it): bringing the
  -- lease back would count the query in flight, and keep it "running", for lease_s more.
  if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
  local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)[1]
  if last and (last[2][1] == 'done' or last[2][1] == 'err' or last[2][1] == 'gone') then
    return 1
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + 60000)
return 1
"""

_DETACH = """
if redis.call('HGET', KEYS[1], 'replica') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'replica', '', 'seen', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_REFUND = """
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if not b[1] then return 0 end
local tokens = math.min(tonumber(ARGV[1]), tonumber(b[1]) + 1)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
return 1
"""


def device_tag(device_id: str) -> str:
    """The hash tag of a device's keys: ``{`` 16 hex digits of its id's SHA-256 ``}``."""
    return "{" + hashlib.sha256(device_id.encode()).hexdigest()[:16] + "}"


def _handle_hash(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """What ``claim`` decided: ``answered`` (``done``), ``running`` (``owner`` replica and
    ``owner_session``), ``busy`` (``in_flight``), ``rate_limited`` (``retry_s``) or
    ``claimed`` (this replica generates it now)."""

    outcome: str
    done: AnswerDone | None = None
    owner: str = ""
    owner_session: str = ""
    in_flight: int = 0
    retry_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry of a running answer's stream: ``kind`` is ``text``, ``done``, ``error``,
    ``reset`` or ``gone``."""

    entry_id: str
    kind: str
    text: str = ""
    offset: int = 0
    done: AnswerDone | None = None
    code: str = ""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    device_id: str
    replica: str
    seen_s: float


def _done_json(done: AnswerDone) -> str:
    return json.dumps(done.fields(), ensure_ascii=False, separators=(",", ":"))


def _done_from(raw: str | None) -> AnswerDone | None:
    if not raw:
        return None
    try:
        return AnswerDone.from_fields(json.loads(raw))
    except (ValueError, ProtocolError):
        return None  # a damaged record answers nothing; the query is generated again


class RedisState:
    """The shared state of all replicas (see the module docstring)."""

    def __init__(self, url: str, *, replica_id: str, lease_s: float, resume_ttl_s: float,
                 answer_ttl_s: float, timeout_s: float) -> None:
        try:
            pool = BlockingConnectionPool.from_url(
                url, max_connections=MAX_CONNECTIONS, timeout=timeout_s * 2,
                decode_responses=True, socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1),
                client_name=f"glasses-agent:{replica_id}"[:100])
            self.redis: Redis = Redis(connection_pool=pool)
        except ValueError as exc:
            raise BadInputError(f"gateway.redis_url {url!r} is not a Redis URL ({exc}); "
                                "expected redis://host:port/db or rediss://...") from exc
        self.replica_id = replica_id
        self.lease_ms = int(lease_s * 1000)
        self.resume_ttl_ms = int(resume_ttl_s * 1000)
        self.answer_ttl_ms = int(answer_ttl_s * 1000)
        self.timeout_s = timeout_s
        self._claim = self.redis.register_script(_CLAIM)
        self._append = self.redis.register_script(_APPEND)
        self._finish = self.redis.register_script(_FINISH)
        self._end = self.redis.register_script(_END)
        self._renew = self.redis.register_script(_RENEW)
        self._detach = self.redis.register_script(_DETACH)
        self._refund = self.redis.register_script(_REFUND)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    # --- keys -------------------------------------------------------------------------------

    @staticmethod
    def key(device_id: str, name: str) -> str:
        return f"ga:{device_tag(device_id)}:{name}"

    def _query_keys(self, device_id: str, query_id: str) -> dict[str, str]:
        k = self.key
        return {"ans": k(device_id, f"ans:{query_id}"), "lease": k(device_id, f"lease:{query_id}"),
                "text": k(device_id, f"text:{query_id}"), "busy": k(device_id, "busy"),
                "rate": k(device_id, "rate"), "cancel": k(device_id, f"cancel:{query_id}")}

    def owner_value(self, session_id: str) -> str:
        return f"{self.replica_id} {session_id}"

    # --- queries ----------------------------------------------------------------------------

    async def claim(self, device_id: str, query_id: str, session_id: str, *,
                    max_in_flight: int, queries_per_min: float, burst: int,
                    takeover: bool = False) -> Claim:
        """In one script: the stored answer, else the replica generating it, else the
        device's limits (skipped for a ``takeover``), else this replica's lease on it."""
        k = self._query_keys(device_id, query_id)
        reply = await self._claim(
            keys=[k["ans"], k["lease"], k["busy"], k["rate"], k["text"]],
            args=[self.owner_value(session_id), self.lease_ms, max_in_flight,
                  queries_per_min / 60_000.0, burst, "1" if takeover else "0", query_id])
        outcome, value = cast(list[str], reply)
        if outcome == "answered":
            done = _done_from(value)
            if done is None:  # damaged: forget it, generate the answer again
                await self.redis.delete(k["ans"])
                return await self.claim(device_id, query_id, session_id,
                                        max_in_flight=max_in_flight,
                                        queries_per_min=queries_per_min, burst=burst,
                                        takeover=takeover)
            return Claim("answered", done=done)
        if outcome == "running":
            owner, _, session = value.partition(" ")
            return Claim("running", owner=owner, owner_session=session)
        if outcome == "busy":
            return Claim("busy", in_flight=int(value))
        if outcome == "rate_limited":
            return Claim("rate_limited", retry_s=float(value) / 1000.0)
        return Claim("claimed")

    async def append(self, device_id: str, query_id: str, session_id: str, offset: int,
                     text: str) -> int:
        """Add text to the running answer's stream: 1 if a barge-in was asked for
        elsewhere, 0 if not, -1 if this replica no longer holds the query's lease."""
        k = self._query_keys(device_id, query_id)
        reply = await self._append(keys=[k["lease"], k["text"], k["cancel"]],
                                   args=[self.owner_value(session_id), text, offset,
                                         max(STREAM_KEEP_MS, 4 * self.lease_ms)])
        return int(cast(int, reply))

    async def cancel_requested(self, device_id: str, query_id: str) -> int | None:
        """Heard characters of a barge-in asked for on another replica, or None."""
        value = await self.redis.get(self._query_keys(device_id, query_id)["cancel"])
        return None if value is None else int(value)

    async def finish(self, device_id: str, query_id: str, session_id: str,
                     done: AnswerDone) -> AnswerDone:
        """Keep the answer (the first one kept wins), end the stream with it, free the
        lease and the device's slot; the answer as kept."""
        k = self._query_keys(device_id, query_id)
        stored = await self._finish(
            keys=[k["ans"], k["lease"], k["busy"], k["text"]],
            args=[self.owner_value(session_id), _done_json(done), self.answer_ttl_ms, query_id,
                  STREAM_KEEP_MS])
        return _done_from(cast(str, stored)) or done

    async def put_answer(self, device_id: str, query_id: str, done: AnswerDone) -> None:
        """Keep an answer finished while Redis was away (the first one kept wins)."""
        k = self._query_keys(device_id, query_id)
        await self.redis.set(k["ans"], _done_json(done), px=self.answer_ttl_ms, nx=True)

    async def end(self, device_id: str, query_id: str, session_id: str, *, code: str = "",
                  message: str = "") -> bool:
        """End a query without an answer: with ``code`` an error that followers pass on,
        without one the query is given up (``gone``: a follower takes it over at once)."""
        k = self._query_keys(device_id, query_id)
        kind, value = ("err", code) if code else ("gone", "1")
        reply = await self._end(keys=[k["lease"], k["busy"], k["text"]],
                                args=[self.owner_value(session_id), query_id, kind, value,
                                      message, STREAM_KEEP_MS])
        return bool(reply)

    async def renew(self, leases: Sequence[tuple[str, str, str]]) -> list[bool]:
        """Renew this replica's leases, ``(device id, query id, session id)`` each, in one
        round trip; False where another replica holds the lease now."""
        if not leases:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for device_id, query_id, session_id in leases:
                k = self._query_keys(device_id, query_id)
                await self._renew(keys=[k["lease"], k["busy"], k["ans"], k["text"]],
                                  args=[self.owner_value(session_id), self.lease_ms, query_id],
                                  client=pipe)
            replies = await pipe.execute()
        return [bool(r) for r in replies]

    async def request_cancel(self, device_id: str, query_id: str, heard_chars: int) -> None:
        """Barge-in on a query generated by another replica: it sees this at its next
        delta. The device's slot is free now."""
        k = self._query_keys(device_id, query_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(k["cancel"], heard_chars, ex=CANCEL_KEEP_S)
            pipe.zrem(k["busy"], query_id)
            await pipe.execute()

    async def refund(self, device_id: str, burst: int) -> None:
        """Give back the rate token of a question taken back before any answer."""
        await self._refund(keys=[self.key(device_id, "rate")], args=[burst])

    async def probe(self, device_id: str, query_id: str) -> tuple[AnswerDone | None, str]:
        """The stored answer (or None) and the lease's owner ("" when none holds it)."""
        k = self._query_keys(device_id, query_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(k["ans"])
            pipe.get(k["lease"])
            stored, owner = await pipe.execute()
        return _done_from(stored), (owner or "").partition(" ")[0]

    def stream_key(self, device_id: str, query_id: str) -> str:
        return self._query_keys(device_id, query_id)["text"]

    async def read(self, positions: Mapping[str, str],
                   block_ms: int | None = None) -> dict[str, list[StreamEntry]]:
        """Entries of several streams (key -> the last entry id seen, "0-0" for all), each
        after its position; with ``block_ms``, waiting up to that long for the first."""
        streams: dict[Any, Any] = dict(positions)  # the client's key types are wider
        reply = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]] | None,
                     await self.redis.xread(streams, block=block_ms, count=512))
        return {key: [_entry(entry_id, fields) for entry_id, fields in items]
                for key, items in reply or []}

    # --- sessions ---------------------------------------------------------------------------

    def _session_key(self, device_id: str, handle: str) -> str:
        return self.key(device_id, f"sess:{_handle_hash(handle)}")

    async def find_session(self, device_id: str, handle: str) -> SessionRecord | None:
        """The session of this device that ``handle`` names (None: unknown or expired)."""
        fields = cast(dict[str, str],
                      await self.redis.hgetall(self._session_key(device_id, handle)))
        if not fields or fields.get("device") != device_id or not fields.get("id"):
            return None
        return SessionRecord(session_id=fields["id"], device_id=device_id,
                             replica=fields.get("replica", ""),
                             seen_s=float(fields.get("seen", 0)))

    async def hold_sessions(self, sessions: Sequence[tuple[str, str, str]]) -> None:
        """Record ``(device id, handle, session id)`` sessions as held by this replica, now
        (on accept, and again at each sweep so they outlive the resume TTL)."""
        if not sessions:
            return
        now_s = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for device_id, handle, session_id in sessions:
                key = self._session_key(device_id, handle)
                pipe.hset(key, mapping={"id": session_id, "device": device_id,
                                        "replica": self.replica_id, "seen": f"{now_s:.3f}"})
                pipe.pexpire(key, self.resume_ttl_ms)
            await pipe.execute()

    async def release_session(self, device_id: str, handle: str) -> None:
        """The session's connection to this replica is gone: resumable for the resume TTL."""
        await self._detach(keys=[self._session_key(device_id, handle)],
                           args=[self.replica_id, f"{time.time():.3f}", self.resume_ttl_ms])

    async def session_holder(self, device_id: str, handle: str) -> str:
        """The replica holding the session's connection now ("" when none does)."""
        holder = await self.redis.hget(self._session_key(device_id, handle), "replica")
        return str(holder or "")


def _entry(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    if "t" in fields:
        return StreamEntry(entry_id, "text", text=fields["t"], offset=int(fields.get("o", 0)))
    if "done" in fields:
        done = _done_from(fields["done"])
        return StreamEntry(entry_id, "done", done=done) if done else StreamEntry(entry_id, "gone")
    if "err" in fields:
        return StreamEntry(entry_id, "error", code=fields["err"], text=fields.get("msg", ""))
    if "reset" in fields:
        return StreamEntry(entry_id, "reset")
    return StreamEntry(entry_id, "gone")
