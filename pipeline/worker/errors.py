"""Errors a stage raises to tell the runner how a failure must be reported."""

from __future__ import annotations


class UserFacingError(RuntimeError):
    """An error whose message is written for the person (shown as the job's reason as-is)."""


class FatalDeviceError(RuntimeError):
    """The device context is unusable; the worker must exit so the server starts a fresh one."""
