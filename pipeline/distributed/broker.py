"""The Dramatiq broker both sides share: Redis, abortable messages, limits for multi-minute jobs.

API replicas only enqueue messages and abort them (no actor is declared there); worker hosts
declare the actor (pipeline/distributed/host.py). A host's consumer heartbeats go on while its
one job runs (the delay-queue consumer keeps polling), so only a dead host's message is re-queued.
"""

from __future__ import annotations

from typing import Any

import redis
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.message import Message
from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend

from pipeline.config import Settings

QUEUE = "adgen"
ACTOR = "adgen_run_job"
NAMESPACE = "adgen-dramatiq"
# A consumer's longest sleep between looks at Redis (Dramatiq backs off up to it). A host whose job just ended
# waits up to this for its next one: at Dramatiq's default (1 s) or 500 ms, hosts sat 0.15-0.25 s idle between
# jobs (bench/distributed.py's hand-off gap).
POLL_MS = 100


def broker_heartbeat_ms(settings: Settings) -> int:
    """A consumer silent this long is dead and its message re-queued: three missed host beats."""
    return int(3 * settings.host_heartbeat_s * 1000)


def make_broker(settings: Settings) -> tuple[RedisBroker, Abortable]:
    assert settings.queue, "distributed mode needs ADGEN_QUEUE=redis://..."
    client: Any = redis.Redis.from_url(settings.queue)
    # Dead consumers are found by queue maintenance, run on a random share of broker commands (an idle
    # consumer polls every POLL_MS): about once per heartbeat interval per consumer.
    polls_per_beat = settings.host_heartbeat_s * 1000 / POLL_MS
    chance = min(MAINTENANCE_SCALE, int(MAINTENANCE_SCALE / max(1.0, polls_per_beat)))
    broker = RedisBroker(client=client, namespace=NAMESPACE, heartbeat_timeout=broker_heartbeat_ms(settings),
                         maintenance_chance=chance)
    abortable = Abortable(backend=RedisBackend(client=client))
    broker.add_middleware(abortable)
    broker.declare_queue(QUEUE)
    return broker, abortable


def job_message(job_id: str, run: dict[str, Any], settings: Settings) -> Message[Any]:
    """A job for the worker hosts (its message_id is what an abort names; record it before enqueueing)."""
    return Message(
        queue_name=QUEUE, actor_name=ACTOR, args=(job_id, run), kwargs={},
        # No retries: a failed job reports why; only a dead host's message is delivered again (by the broker).
        options={"max_retries": 0, "time_limit": int(settings.job_time_limit_s * 1000)},
    )
