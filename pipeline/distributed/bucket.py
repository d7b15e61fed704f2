"""Job files in an S3-compatible bucket: a job folder mirrored under ``<prefix>jobs/<id>/``.

API replicas upload a job's inputs before it is queued; worker hosts download them, and
upload what the job makes (after every stage and at the end, the delivered ad under
``output/``); API replicas download results to serve them. Objects are written once, so a
file already present locally with the same size is not fetched again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline.config import Settings

log = logging.getLogger("adgen.bucket")

SKIP_SUFFIXES = (".tmp", ".lock")  # files being written; job.json is the API's, kept in Redis instead
# Files up to this size go in one request. boto3's managed transfers (upload_file, download_file) start a
# pool of threads and futures for every file, which for the few-hundred-KB stage images that follow every
# stage cost more CPU than the transfer itself, and the GIL they take holds up the API's event loop.
SINGLE_REQUEST_MAX = 16 * 1024 * 1024


class Bucket:
    def __init__(self, settings: Settings) -> None:
        self.name = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.s3: Any = self._client(settings, settings.s3_endpoint)
        # Presigned URLs name the endpoint clients reach (signing is local: this client never connects).
        public = settings.s3_public_endpoint or settings.s3_endpoint
        self.presigner: Any = self.s3 if public == settings.s3_endpoint else self._client(settings, public)

    @staticmethod
    def _client(settings: Settings, endpoint: str | None) -> Any:
        return boto3.client(
            "s3", endpoint_url=endpoint, region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key, aws_secret_access_key=settings.s3_secret_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"},
                          signature_version="s3v4", connect_timeout=5, read_timeout=30),
        )

    def job_key(self, job_id: str, rel: str = "") -> str:
        return f"{self.prefix}jobs/{job_id}/{rel}"

    def ensure(self) -> None:
        """Create the bucket if it does not exist (a worker or API replica may be the first to start)."""
        try:
            self.s3.head_bucket(Bucket=self.name)
        except ClientError:
            self.s3.create_bucket(Bucket=self.name)

    def put_file(self, job_id: str, rel: str, path: Path) -> None:
        key = self.job_key(job_id, rel)
        if path.stat().st_size > SINGLE_REQUEST_MAX:
            self.s3.upload_file(str(path), self.name, key)  # multipart, in parallel parts
            return
        with path.open("rb") as body:
            self.s3.put_object(Bucket=self.name, Key=key, Body=body)

    def upload_dir(self, job_id: str, folder: Path, sent: dict[str, int] | None = None) -> dict[str, int]:
        """Every file of the job folder not yet sent with this size; returns what has been sent."""
        sent = {} if sent is None else sent
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name == "job.json" or path.name.endswith(SKIP_SUFFIXES):
                continue
            rel = path.relative_to(folder).as_posix()
            size = path.stat().st_size
            if sent.get(rel) == size:
                continue
            self.put_file(job_id, rel, path)
            sent[rel] = size
        return sent

    def listing(self, job_id: str) -> dict[str, int]:
        """The job's objects: path inside the job folder -> size."""
        out: dict[str, int] = {}
        prefix = self.job_key(job_id)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix):]] = int(obj["Size"])
        return out

    def download_dir(self, job_id: str, folder: Path, only: str | None = None) -> list[str]:
        """The job's objects (or only those under ``only``) into the folder; returns the paths fetched."""
        got = []
        for rel, size in self.listing(job_id).items():
            if only is not None and not rel.startswith(only):
                continue
            target = (folder / rel).resolve()
            if not target.is_relative_to(folder.resolve()):
                continue  # a key naming ../ never writes outside the job folder
            if target.is_file() and target.stat().st_size == size:
                continue
            self.get_file(job_id, rel, target, size)
            got.append(rel)
        return got

    def get_file(self, job_id: str, rel: str, target: Path, size: int | None = None) -> bool:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        key = self.job_key(job_id, rel)
        try:
            if size is None or size > SINGLE_REQUEST_MAX:
                self.s3.download_file(self.name, key, str(tmp))  # ranged parts, in parallel
            else:
                body = self.s3.get_object(Bucket=self.name, Key=key)["Body"]
                with body, tmp.open("wb") as out:
                    shutil.copyfileobj(body, out, 1 << 20)
        except ClientError:
            return False
        tmp.replace(target)
        return True

    def presigned_url(self, job_id: str, rel: str, expires_s: int = 3600) -> str:
        url: str = self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": self.job_key(job_id, rel)}, ExpiresIn=expires_s)
        return url
