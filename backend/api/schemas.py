"""The JSON shapes of the REST API (design.md, "REST API"): pydantic response models, and the
task request model, built per registry so OpenAPI shows each task type's input schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from agents.registry import AgentClass, AgentRegistry
from backend.core.breaker_state import BreakerState
from backend.tasks.model import TaskStatus


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorBody


class TaskErrorOut(_Out):
    code: str
    message: str


class TaskSummaryOut(_Out):
    id: str
    type: str
    status: TaskStatus
    result: dict[str, Any] | None = None
    error: TaskErrorOut | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_seconds: float
    attempts: int
    max_attempts: int
    cancel_requested: bool


class TaskOut(TaskSummaryOut):
    input: dict[str, Any]


class TaskListOut(BaseModel):
    tasks: list[TaskSummaryOut]
    next_cursor: str | None


class AttemptOut(_Out):
    attempt: int
    target: str
    outcome: str = Field(description="success | failure | refused")
    category: str | None
    http_status: int | None
    started_at: datetime
    duration_ms: float
    decision: str
    wait_ms: float | None
    retry_after_ms: float | None = None
    breaker_state: str | None = None
    error: str | None = None


class CallOut(_Out):
    id: str
    context: str
    agent: str | None
    task_id: str | None
    route: str | None
    target: str | None
    outcome: str
    category: str | None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    replayed: bool
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    attempts: list[AttemptOut]


class TaskCallsOut(BaseModel):
    task_id: str
    calls: list[CallOut]


class CallListOut(BaseModel):
    calls: list[CallOut]
    next_cursor: str | None


class BreakerOut(_Out):
    key: str
    state: BreakerState
    consecutive_failures: int
    opened_at: datetime | None
    retry_at: datetime | None
    forced_open: bool
    probes_in_flight: int
    last_error: str | None
    last_category: str | None
    updated_at: datetime | None
    version: int


class BreakerListOut(BaseModel):
    breakers: list[BreakerOut]


class BreakerEventOut(_Out):
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    actor: str
    at: datetime
    category: str | None
    message: str | None


class BreakerDetailOut(BaseModel):
    breaker: BreakerOut
    events: list[BreakerEventOut]


class StatsBucketOut(_Out):
    start: datetime
    calls: int
    retries: int
    failures: int


class TargetStatsOut(_Out):
    target: str
    calls: int
    calls_succeeded: int
    calls_failed: int
    attempts: int
    retries: int
    fallbacks: int
    refused: int
    failures: int
    failures_by_category: dict[str, int]
    breaker_transitions: dict[str, int]
    avg_attempt_ms: float | None
    buckets: list[StatsBucketOut] = Field(
        default_factory=list,
        description="The window in equal time buckets of bucket_seconds, oldest first",
    )


class StatsOut(_Out):
    window_seconds: int
    since: datetime
    until: datetime
    targets: list[TargetStatsOut]
    bucket_seconds: int = Field(0, description="How long each bucket of targets[].buckets is")
    failures_by_category: dict[str, int] = Field(
        default_factory=dict, description="Failed attempts by error category, every target"
    )


class StatusOut(BaseModel):
    status: str


def _camel(task_type: str) -> str:
    return "".join(part.capitalize() for part in task_type.replace("-", "_").split("_"))


def _task_model(agent: AgentClass, max_deadline: float) -> type[BaseModel]:
    extra = agent.Input.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    example_inputs = examples if isinstance(examples, list) and examples else []
    config = ConfigDict(
        extra="forbid",
        title=f"{_camel(agent.task_type)}TaskRequest",
        json_schema_extra={
            "examples": [{"type": agent.task_type, "input": i} for i in example_inputs[:1]]
        },
    )
    tag: Any = Literal[agent.task_type]
    model: type[BaseModel] = create_model(
        f"{_camel(agent.task_type)}TaskRequest",
        __config__=config,
        __doc__=agent.description or f"A {agent.task_type!r} task for agent {agent.name}.",
        type=(tag, Field(description="The task type")),
        input=(agent.Input, ...),
        deadline_seconds=(
            float | None,
            Field(
                default=None,
                gt=0,
                le=max_deadline,
                description="Seconds the task may take, from submission (default: the "
                "service's BULWARK_TASK_DEADLINE_SECONDS)",
            ),
        ),
    )
    return model


def task_request_type(registry: AgentRegistry, max_deadline: float) -> Any:
    """The body of ``POST /v1/tasks``: one model per task type of ``registry``,
    discriminated by ``type``."""
    models = [_task_model(agent, max_deadline) for agent in registry]
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


__all__ = [
    "AttemptOut",
    "BreakerDetailOut",
    "BreakerEventOut",
    "BreakerListOut",
    "BreakerOut",
    "CallListOut",
    "CallOut",
    "ErrorResponse",
    "StatsBucketOut",
    "StatsOut",
    "StatusOut",
    "TaskCallsOut",
    "TaskListOut",
    "TaskOut",
    "TaskSummaryOut",
    "task_request_type",
]
