"""What routes depend on, as ``Annotated`` aliases. The application's lifespan builds one
:class:`AppState` and puts it in ``app.state.bulwark``; the aliases hand out its parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from agents.registry import AgentRegistry
from backend.config import Settings
from backend.services.breakers import BreakerService
from backend.services.health import HealthService
from backend.services.history import HistoryService
from backend.services.keys import KeyService
from backend.services.stats import StatsService
from backend.services.tasks import TaskService


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything a request may need, built once per application start."""

    settings: Settings
    registry: AgentRegistry
    tasks: TaskService
    history: HistoryService
    stats: StatsService
    breakers: BreakerService
    keys: KeyService
    health: HealthService


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.bulwark
    return state


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


def get_task_service(request: Request) -> TaskService:
    return get_state(request).tasks


def get_history_service(request: Request) -> HistoryService:
    return get_state(request).history


def get_stats_service(request: Request) -> StatsService:
    return get_state(request).stats


def get_breaker_service(request: Request) -> BreakerService:
    return get_state(request).breakers


def get_key_service(request: Request) -> KeyService:
    return get_state(request).keys


def get_health_service(request: Request) -> HealthService:
    return get_state(request).health


SettingsDep = Annotated[Settings, Depends(get_settings)]
TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]
HistoryServiceDep = Annotated[HistoryService, Depends(get_history_service)]
StatsServiceDep = Annotated[StatsService, Depends(get_stats_service)]
BreakerServiceDep = Annotated[BreakerService, Depends(get_breaker_service)]
KeyServiceDep = Annotated[KeyService, Depends(get_key_service)]
HealthServiceDep = Annotated[HealthService, Depends(get_health_service)]

__all__ = [
    "AppState",
    "BreakerServiceDep",
    "HealthServiceDep",
    "HistoryServiceDep",
    "KeyServiceDep",
    "SettingsDep",
    "StatsServiceDep",
    "TaskServiceDep",
    "get_state",
]
