"""Measured stage durations shared by the cluster: the same moving averages as ``StageStats``, in Redis.

Worker hosts are the one writer (each stage a host runs is recorded once, atomically, by a
script); API replicas read them to weight progress and estimate ETAs, refreshed every few
seconds, so every replica gives the same estimates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.distributed.state import RedisState
from pipeline.jobs.stats import ALPHA, StageStats

REFRESH_S = 5.0

# KEYS: the stats hash. ARGV: key, seconds, alpha.
_RECORD = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local s, a = tonumber(ARGV[2]), tonumber(ARGV[3])
local entry = {mean = s, count = 1}
if old then
  local d = cjson.decode(old)
  entry = {mean = d.mean * (1 - a) + s * a, count = (d.count or 1) + 1}
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
"""


class RedisStageStats(StageStats):
    def __init__(self, state: RedisState, writer: bool) -> None:
        self.state = state
        self.writer = writer  # hosts record; API replicas only read (several may follow one job)
        self._record = state.r.register_script(_RECORD)
        self._loaded = 0.0
        super().__init__(Path("/nonexistent"))  # the path is never used: _read and record are Redis's

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            raw = self.state.r.hgetall(self.state.key("stats"))
        except Exception:  # Redis away: the registry's defaults serve
            return getattr(self, "_data", {})
        self._loaded = time.monotonic()
        return {k: json.loads(v) for k, v in raw.items()}

    def expected(self, backend: str, width: int, height: int, stage: str) -> float:
        if time.monotonic() - self._loaded > REFRESH_S:
            self._data = self._read()
        return super().expected(backend, width, height, stage)

    def record(self, backend: str, width: int, height: int, stage: str, seconds: float) -> None:
        if self.writer:
            self._record(keys=[self.state.key("stats")], args=[self.key(backend, width, height, stage), seconds, ALPHA])
