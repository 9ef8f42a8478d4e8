"""What becomes of a task when its agent run ends: the decision, kept apart from the writes
that carry it out (:mod:`backend.worker.runner`).

Rules, in domain words, first match wins:

* the worker lost the lease (another worker took the task) → write nothing;
* the agent returned its output → ``succeeded`` with the output as JSON;
* cancellation was requested → ``cancelled``;
* the worker is shutting down → release the task to the queue;
* the deadline passed → ``failed`` with ``deadline_exceeded``;
* no agent serves the task type → ``failed`` with ``unknown_task_type``;
* the input does not fit the agent's ``Input`` → ``failed`` with ``invalid_request``;
* a Bulwark error → ``failed`` with its category as the code and its (redacted) message;
* anything else is a bug → ``failed`` with ``internal_error`` and a generic message; the
  traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agents.context import AgentCancelledError
from agents.registry import UnknownTaskType
from backend.core.errors import BulwarkError, ErrorCategory
from backend.tasks.model import TaskError, TaskStatus

INTERNAL_ERROR_MESSAGE = "the agent failed unexpectedly; the error was logged for the operator"


class StopReason(enum.Enum):
    """Why a running task was stopped before its agent finished."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


class Action(enum.Enum):
    FINISH = "finish"
    RELEASE = "release"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    status: TaskStatus | None = None
    result: dict[str, Any] | None = None
    error: TaskError | None = None


class InvalidInput(Exception):
    """The task's input does not validate against its agent's ``Input`` model."""

    def __init__(self, agent: str, problem: ValidationError) -> None:
        where = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'input'}: {e['msg']}"
            for e in problem.errors()[:5]
        )
        super().__init__(f"the task input is not valid for agent {agent!r}: {where}")


def decide(
    agent_run: asyncio.Task[dict[str, Any]],
    *,
    stop: StopReason | None,
    deadline_passed: bool,
    deadline_seconds: float,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> Outcome:
    """The outcome of a finished ``agent_run`` (see the module's rules)."""
    error = None if agent_run.cancelled() else agent_run.exception()
    if stop is StopReason.LEASE_LOST:
        return Outcome(Action.DROP)
    if not agent_run.cancelled() and error is None:
        return Outcome(Action.FINISH, TaskStatus.SUCCEEDED, result=agent_run.result())
    if stop is StopReason.CANCEL_REQUESTED or isinstance(error, AgentCancelledError):
        return _failed(TaskStatus.CANCELLED, "cancelled", "the task was cancelled")
    if stop is StopReason.SHUTDOWN or error is None:
        return Outcome(Action.RELEASE)
    if deadline_passed:
        message = f"the task did not finish within its deadline of {deadline_seconds:g} s"
        return _failed(TaskStatus.FAILED, "deadline_exceeded", message)
    if isinstance(error, UnknownTaskType):
        return _failed(TaskStatus.FAILED, "unknown_task_type", str(error))
    if isinstance(error, InvalidInput):
        return _failed(TaskStatus.FAILED, ErrorCategory.INVALID_REQUEST.value, str(error))
    if isinstance(error, BulwarkError):
        return _failed(TaskStatus.FAILED, error.category.value, error.message)
    logger.error("task failed with an unexpected error", exc_info=error)
    return _failed(TaskStatus.FAILED, "internal_error", INTERNAL_ERROR_MESSAGE)


def _failed(status: TaskStatus, code: str, message: str) -> Outcome:
    return Outcome(Action.FINISH, status, error=TaskError(code, message))


__all__ = ["INTERNAL_ERROR_MESSAGE", "Action", "InvalidInput", "Outcome", "StopReason", "decide"]
