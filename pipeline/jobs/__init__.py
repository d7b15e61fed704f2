"""The server side: the job manager and its parts (intake, queue, supervisor, progress, status, store).

Nothing here imports the worker side (cv2, torch, stages): the worker is a separate process
reached only through ``pipeline.messages``.
"""

from pipeline.jobs.book import JobNotFound
from pipeline.jobs.health import StartupError
from pipeline.jobs.job import Job
from pipeline.jobs.manager import JobManager, QueueFull

__all__ = ["Job", "JobManager", "JobNotFound", "QueueFull", "StartupError"]
