"""Executors run a job's steps: ``make_executor(config)`` returns the configured one.

``local`` runs steps as subprocesses of the worker (see ``local.py``); the interface every
executor offers is in ``base.py``.
"""

from __future__ import annotations

from appliance.executors.base import Executor, ExecutorError, JobContext, StepResult


def make_executor(config, name: str | None = None) -> Executor:
    """The executor named ``name``, by default ``pipelines.executor`` of the configuration."""
    name = name or config.pipelines.executor
    if name == "local":
        from appliance.executors.local import LocalExecutor

        return LocalExecutor(config)
    raise ExecutorError(f"unknown executor {name!r} (available: local)")


__all__ = ["Executor", "ExecutorError", "JobContext", "StepResult", "make_executor"]
