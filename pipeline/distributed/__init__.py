"""Distributed mode (issue 15): one queue, many GPU worker hosts, any number of API replicas.

Selected by ``ADGEN_QUEUE=redis://...`` (pipeline/config.py); needs the ``distributed`` extra
(dramatiq[redis], dramatiq-abort, redis, boto3), imported only here. The parts:

- ``codec``: RunJob and worker events as JSON (nothing is unpickled from Redis).
- ``state``: Redis keys: pending jobs as a sorted set (queue positions), job records, each job's
  capped event stream, the per-job run state (claimed by which host, lost hosts), host heartbeats.
- ``bucket``: job files in an S3-compatible bucket (boto3).
- ``stats``: the stage durations behind progress and ETAs, in Redis (hosts write, replicas read).
- ``broker``: the Dramatiq broker (Redis, prefetch 1, time limit, dramatiq-abort).
- ``executor``: ``RemoteHosts``, the executor of this mode (jobs to the hosts, their events back).
- ``manager``: the API side, a ``JobManager`` whose queue, book and executor are the above.
- ``host``: ``adgen-worker``, one Dramatiq consumer per GPU proxying to today's long-lived worker.
"""
