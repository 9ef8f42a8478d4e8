"""Which agents exist. A registry maps task types to agent classes; the API accepts exactly
the task types of its registry, each with its agent's ``Input`` schema.

Nothing is registered at import time. :meth:`AgentRegistry.discover` builds the registry a
service uses: the built-in agents, then every class published under the entry-point group
``bulwark.agents`` by installed packages, then the ``module:Class`` names in
``BULWARK_AGENTS``."""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import entry_points
from typing import Any, TypeVar

from agents.base import BaseAgent

ENTRY_POINT_GROUP = "bulwark.agents"

log = logging.getLogger("bulwark.agents")

AgentClass = type[BaseAgent[Any, Any]]
A = TypeVar("A", bound=AgentClass)


class UnknownTaskType(KeyError):
    """No agent is registered for a task type."""

    def __init__(self, task_type: str, known: Iterable[str]) -> None:
        self.task_type = task_type
        self.known = sorted(known)
        super().__init__(task_type)

    def __str__(self) -> str:
        return f"unknown task type {self.task_type!r}; valid types: {', '.join(self.known)}"


class AgentRegistry:
    """Task type → agent class."""

    def __init__(self, agents: Iterable[AgentClass] = ()) -> None:
        self._agents: dict[str, AgentClass] = {}
        for agent in agents:
            self.register(agent)

    def register(self, agent: A) -> A:
        """Add ``agent``; usable as a class decorator (``@registry.register``)."""
        for attribute in ("name", "task_type", "Input", "Output"):
            if not hasattr(agent, attribute):
                raise TypeError(f"agent class {agent.__name__} has no {attribute!r} attribute")
        existing = self._agents.get(agent.task_type)
        if existing is not None and existing is not agent:
            raise ValueError(
                f"task type {agent.task_type!r} is already served by {existing.__name__}"
            )
        self._agents[agent.task_type] = agent
        return agent

    def get(self, task_type: str) -> AgentClass:
        try:
            return self._agents[task_type]
        except KeyError:
            raise UnknownTaskType(task_type, self._agents) from None

    def types(self) -> list[str]:
        return sorted(self._agents)

    def __iter__(self) -> Iterator[AgentClass]:
        return iter(self._agents[t] for t in self.types())

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._agents

    @classmethod
    def builtins(cls) -> AgentRegistry:
        from agents.codesmith import Codesmith
        from agents.reviewer import ReviewerGPT

        return cls([ReviewerGPT, Codesmith])

    @classmethod
    def discover(cls, extra: Iterable[str] = ()) -> AgentRegistry:
        """Built-ins, installed entry points, then ``extra`` ``module:Class`` names."""
        registry = cls.builtins()
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            registry.register(_agent_class(entry_point.load, entry_point.value))
        for name in extra:
            registry.register(_agent_class(functools.partial(_import, name), name))
        return registry


def _import(name: str) -> Any:
    module, _, attribute = name.partition(":")
    if not attribute:
        raise ValueError(f"agent {name!r} must be written module:Class")
    return getattr(importlib.import_module(module), attribute)


def _agent_class(load: Callable[[], Any], name: str) -> AgentClass:
    agent = load()
    if not (isinstance(agent, type) and issubclass(agent, BaseAgent)):
        raise TypeError(f"{name} is not a BaseAgent subclass")
    return agent


__all__ = ["ENTRY_POINT_GROUP", "AgentRegistry", "UnknownTaskType"]
