"""adgen's pipeline: schemas, job manager, worker process, stages and backends."""
