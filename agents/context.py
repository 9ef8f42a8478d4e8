"""What an agent receives with every run: the task it works for, its deadline, cancellation,
a logger, the gateway, and a way to call other agents."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from backend.core.errors import ErrorCategory, PermanentError, TransientError
from backend.llm.gateway import LLMGateway
from backend.llm.replay import ReplayBook

if TYPE_CHECKING:
    from agents.registry import AgentRegistry


class AgentCancelledError(PermanentError):
    """The task was cancelled while the agent ran."""

    def __init__(self, message: str = "the task was cancelled") -> None:
        super().__init__(message, category=ErrorCategory.CANCELLED)


@dataclass
class AgentContext:
    """One agent run's surroundings. Agents read it; the runner (worker or Python API) builds
    it. ``deadline`` is on ``time.monotonic()``'s scale and bounds every LLM call and every
    agent-to-agent call made with this context."""

    gateway: LLMGateway
    registry: AgentRegistry
    task_id: str | None = None
    deadline: float | None = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger("bulwark.agents")
    )
    agent_path: tuple[str, ...] = ()
    """The chain of agents that led here (``("codesmith", "reviewer")``)."""
    replay: ReplayBook | None = None
    """Answers recorded by an earlier run of this task, reused in order (see replay.py)."""

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise if the task was cancelled or its deadline passed; agents call this between
        steps that do not call an LLM."""
        if self.cancelled.is_set():
            raise AgentCancelledError()
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise TransientError("the task's deadline passed", category=ErrorCategory.TIMEOUT)

    def for_agent(self, name: str) -> AgentContext:
        """The same context, seen by agent ``name`` (for history and logs)."""
        logger = logging.LoggerAdapter(
            logging.getLogger("bulwark.agents"), {"agent": name, "task_id": self.task_id}
        )
        return AgentContext(
            gateway=self.gateway,
            registry=self.registry,
            task_id=self.task_id,
            deadline=self.deadline,
            cancelled=self.cancelled,
            logger=logger,
            agent_path=(*self.agent_path, name),
            replay=self.replay,
        )

    async def call_agent(self, task_type: str, input: BaseModel | Mapping[str, Any]) -> BaseModel:
        """Run the agent registered for ``task_type`` inside this task: same task id, same
        deadline, same cancellation. Returns its output model."""
        self.check()
        agent_class = self.registry.get(task_type)
        if agent_class.name in self.agent_path:
            raise PermanentError(
                f"agent {agent_class.name!r} is already running in this task "
                f"({' -> '.join(self.agent_path)}); recursive agent calls are refused",
                category=ErrorCategory.INVALID_REQUEST,
            )
        output: BaseModel = await agent_class().execute(input, self)
        return output


__all__ = ["AgentCancelledError", "AgentContext"]
