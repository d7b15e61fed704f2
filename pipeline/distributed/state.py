"""Shared state in Redis, one key family each, all under one namespace.

- ``pending``: a sorted set of waiting job ids scored by submit time: queue positions for every
  API replica, and the gate that makes a cancelled job never start (a host claims a job by
  removing it, atomically with the cancel's check, in ``claim``/``cancel`` below).
- ``run:<id>``: a hash with the job's run state (queued, running, lost, cancelled, done), the
  host running it, the hosts lost while running it and the Dramatiq message id (for aborts).
- ``job:<id>``: the job's status record (the same JSON as job.json), for any API replica; ``jobs``: every
  job id scored by its submit time (any replica's job listing).
- ``events:<id>``: the job's capped event stream (JSON, pipeline/distributed/codec.py).
- ``host:<name>``: a worker host's heartbeat (its WorkerState), expiring after three missed beats.
- ``answers:<id>``: LLM design answers for a running job (API -> host).
- ``wake:<replica>``: an API replica's wake-up stream (a new job to follow ends its blocking read).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis

STREAM_MAXLEN = 2000  # events kept per job: a long diffusion job sends a few hundred
RECORD_TTL_S = 40 * 86400  # records outlive ADGEN_KEEP_DAYS' default; finished jobs' keys expire

# KEYS: run hash, pending set. ARGV: job id, host, max lost hosts, now.
# -> {verdict, lost hosts separated by spaces}; verdict: ok | skip:<state> | gave_up. A job still 'running' on
# another host is a redelivery after that host died unseen (counted here); 'lost' was counted by an API.
_CLAIM = """
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'cancelled' or st == 'done' then return {'skip:' .. st, ''} end
local lost = redis.call('HGET', KEYS[1], 'lost_hosts') or ''
if st == 'running' then
  local prev = redis.call('HGET', KEYS[1], 'host')
  if prev == ARGV[2] then return {'skip:duplicate', lost} end
  lost = lost .. prev .. ' '
  redis.call('HSET', KEYS[1], 'lost_hosts', lost)
end
redis.call('ZREM', KEYS[2], ARGV[1])
local n = 0
for _ in string.gmatch(lost, '%S+') do n = n + 1 end
if n >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'done')
  return {'gave_up', lost}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'host', ARGV[2], 'since', ARGV[4])
return {'ok', lost}
"""

# KEYS: run hash, pending set. ARGV: job id. -> 1 if the job was waiting (or re-queued after a lost host) and
# now never starts, else 0 (a host has it).
_CANCEL = """
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' or st == 'lost' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: run hash. ARGV: host seen dead, max lost hosts. -> lost count, or -1 if the job moved on meanwhile.
_LOST = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('HGET', KEYS[1], 'host') ~= ARGV[1] then
  return -1
end
local lost = (redis.call('HGET', KEYS[1], 'lost_hosts') or '') .. ARGV[1] .. ' '
redis.call('HSET', KEYS[1], 'lost_hosts', lost, 'state', 'lost', 'since', ARGV[3])
local n = 0
for _ in string.gmatch(lost, '%S+') do n = n + 1 end
if n >= tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'state', 'done') end
return n
"""


class RedisState:
    def __init__(self, url: str, namespace: str = "adgen") -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self.ns = namespace
        self._claim = self.r.register_script(_CLAIM)
        self._cancel = self.r.register_script(_CANCEL)
        self._lost = self.r.register_script(_LOST)

    def key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    # ---- queue ---------------------------------------------------------------------------
    def add_pending(self, job_id: str) -> None:
        """Waiting from now on (its message follows once its inputs are in the bucket)."""
        with self.r.pipeline() as p:
            p.hset(self.key("run", job_id), "state", "queued")
            p.expire(self.key("run", job_id), RECORD_TTL_S)
            p.zadd(self.key("pending"), {job_id: time.time()}, nx=True)
            p.execute()

    def set_message_id(self, job_id: str, message_id: str) -> None:
        self.r.hset(self.key("run", job_id), "message_id", message_id)

    def remove_pending(self, job_id: str) -> bool:
        return bool(self.r.zrem(self.key("pending"), job_id))

    def position(self, job_id: str) -> int | None:
        rank = self.r.zrank(self.key("pending"), job_id)
        return None if rank is None else int(rank)

    def pending(self) -> list[str]:
        return list(self.r.zrange(self.key("pending"), 0, -1))

    def pending_count(self) -> int:
        return int(self.r.zcard(self.key("pending")))

    # ---- run state -----------------------------------------------------------------------
    def claim(self, job_id: str, host: str, max_lost: int) -> tuple[str, list[str]]:
        verdict, lost = self._claim(keys=[self.key("run", job_id), self.key("pending")],
                                    args=[job_id, host, max_lost, time.time()])
        return str(verdict), str(lost).split()

    def cancel_queued(self, job_id: str) -> bool:
        return bool(self._cancel(keys=[self.key("run", job_id), self.key("pending")], args=[job_id]))

    def mark_lost(self, job_id: str, host: str, max_lost: int) -> int:
        return int(self._lost(keys=[self.key("run", job_id)], args=[host, max_lost, time.time()]))

    def mark_done(self, job_id: str) -> None:
        self.r.hset(self.key("run", job_id), "state", "done")
        self.r.zrem(self.key("pending"), job_id)

    def run_info(self, job_id: str) -> dict[str, str]:
        return dict(self.r.hgetall(self.key("run", job_id)))

    # ---- records -------------------------------------------------------------------------
    def save_record(self, job_id: str, record: dict[str, Any]) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.set(self.key("job", job_id), json.dumps(record, default=str), ex=RECORD_TTL_S)
            p.zadd(self.key("jobs"), {job_id: float(record.get("created_at") or time.time())})
            p.zremrangebyscore(self.key("jobs"), 0, time.time() - RECORD_TTL_S)  # their records have expired
            p.execute()

    def newest_records(self, limit: int, known: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The records of the cluster's newest ``limit`` jobs not in ``known`` (ids whose record expired leave
        the index here)."""
        seen = set(known)
        ids = [j for j in self.r.zrevrange(self.key("jobs"), 0, max(0, limit - 1)) if j not in seen]
        if not ids:
            return []
        texts = self.r.mget([self.key("job", j) for j in ids])
        if gone := [j for j, text in zip(ids, texts, strict=True) if text is None]:
            self.r.zrem(self.key("jobs"), *gone)
        return [json.loads(text) for text in texts if text]

    def record(self, job_id: str) -> dict[str, Any] | None:
        text = self.r.get(self.key("job", job_id))
        return None if text is None else dict(json.loads(text))

    def records(self) -> Iterator[dict[str, Any]]:
        for key in self.r.scan_iter(self.key("job", "*"), count=500):
            text = self.r.get(key)
            if text:
                yield json.loads(text)

    # ---- events --------------------------------------------------------------------------
    def publish(self, job_id: str, event_json: str) -> None:
        key = self.key("events", job_id)
        with self.r.pipeline(transaction=False) as p:
            p.xadd(key, {"e": event_json}, maxlen=STREAM_MAXLEN, approximate=True)
            p.expire(key, RECORD_TTL_S)
            p.execute()

    def read_events(self, cursors: dict[str, str], block_ms: int,
                    wake: tuple[str, str] | None = None) -> list[tuple[str, str, str]]:
        """New entries of the given jobs' streams after each cursor: (job id, entry id, event JSON). ``wake``: a
        replica's wake-up stream and its cursor, read too, so a newly followed job joins the read at once (its
        entries come back as ("", entry id, ""))."""
        streams = {self.key("events", j): c for j, c in cursors.items()}
        if wake is not None:
            streams[self.key("wake", wake[0])] = wake[1]
        if not streams:
            return []
        out: list[tuple[str, str, str]] = []
        for key, entries in self.r.xread(streams, block=block_ms, count=200) or []:
            if not key.startswith(self.key("events", "")):
                out.extend(("", entry_id, "") for entry_id, _ in entries)
                continue
            job_id = key.rsplit(":", 1)[1]
            out.extend((job_id, entry_id, fields.get("e", "")) for entry_id, fields in entries)
        return out

    def wake(self, replica: str) -> None:
        """Ends the replica's blocking read of its job streams now (it follows a new job)."""
        key = self.key("wake", replica)
        with self.r.pipeline(transaction=False) as p:
            p.xadd(key, {"w": "1"}, maxlen=16, approximate=False)
            p.expire(key, 86400)
            p.execute()

    # ---- design answers (API -> host) ----------------------------------------------------
    def push_answer(self, job_id: str, answer_json: str) -> None:
        key = self.key("answers", job_id)
        self.r.rpush(key, answer_json)
        self.r.expire(key, 3600)

    def pop_answer(self, job_id: str) -> str | None:
        value = self.r.lpop(self.key("answers", job_id))
        return value if isinstance(value, str) else None

    # ---- hosts ---------------------------------------------------------------------------
    def beat(self, host: str, info: dict[str, Any], ttl_s: float) -> None:
        self.r.set(self.key("host", host), json.dumps(info, default=str), px=max(1, int(ttl_s * 1000)))

    def host_alive(self, host: str) -> bool:
        return bool(self.r.exists(self.key("host", host)))

    def hosts(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key in self.r.scan_iter(self.key("host", "*"), count=100):
            text = self.r.get(key)
            if text:
                out[key.split(":", 2)[2]] = json.loads(text)
        return out

    def forget_host(self, host: str) -> None:
        self.r.delete(self.key("host", host))
