"""The agent registry: task types, duplicates, and discovery of third-party agents."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from agents import ENTRY_POINT_GROUP, AgentContext, AgentRegistry, BaseAgent, UnknownTaskType
from backend.config import Settings


class EchoInput(BaseModel):
    text: str


class Echo(BaseAgent[EchoInput, EchoInput]):
    name = "echo"
    task_type = "echo"
    Input = EchoInput
    Output = EchoInput

    async def run(self, input: EchoInput, ctx: AgentContext) -> EchoInput:
        return input


class OtherEcho(Echo):
    name = "other-echo"


class NotAnAgent:
    name = "impostor"
    task_type = "impostor"


def test_unknown_task_type_lists_the_valid_types() -> None:
    registry = AgentRegistry([Echo])
    with pytest.raises(UnknownTaskType) as caught:
        registry.get("summarize")
    assert isinstance(caught.value, KeyError)
    assert caught.value.known == ["echo"]
    assert str(caught.value) == "unknown task type 'summarize'; valid types: echo"


def test_the_decorator_registers_and_returns_the_class() -> None:
    registry = AgentRegistry()

    @registry.register
    class Shout(Echo):
        name = "shout"
        task_type = "shout"

    assert registry.get("shout") is Shout
    assert "shout" in registry
    assert registry.types() == ["shout"]
    assert list(registry) == [Shout]


def test_a_second_agent_for_a_task_type_is_rejected() -> None:
    registry = AgentRegistry([Echo])
    registry.register(Echo)  # the same class again is harmless
    with pytest.raises(ValueError, match="'echo' is already served by Echo"):
        registry.register(OtherEcho)
    assert registry.get("echo") is Echo


def test_a_class_without_the_contract_is_rejected() -> None:
    class Incomplete(BaseAgent[EchoInput, EchoInput]):
        name = "incomplete"

    with pytest.raises(TypeError, match="no 'task_type' attribute"):
        AgentRegistry().register(Incomplete)


def test_builtins_serve_review_and_code() -> None:
    registry = AgentRegistry.builtins()
    assert registry.types() == ["code", "review"]
    assert registry.get("code").name == "codesmith"


def test_discover_loads_module_class_names() -> None:
    registry = AgentRegistry.discover([f"{__name__}:Echo"])
    assert registry.get("echo") is Echo
    assert {"code", "review"} <= set(registry.types())


def test_discover_takes_the_names_from_bulwark_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_AGENTS", f"{__name__}:Echo, ")
    assert Settings().agents == [f"{__name__}:Echo"]
    assert AgentRegistry.discover(Settings().agents).get("echo") is Echo


def test_discover_rejects_what_is_not_an_agent() -> None:
    with pytest.raises(TypeError, match="NotAnAgent is not a BaseAgent subclass"):
        AgentRegistry.discover([f"{__name__}:NotAnAgent"])
    with pytest.raises(ValueError, match="must be written module:Class"):
        AgentRegistry.discover([__name__])
    with pytest.raises(AttributeError):
        AgentRegistry.discover([f"{__name__}:Missing"])
    with pytest.raises(ModuleNotFoundError):
        AgentRegistry.discover(["no_such_module_for_bulwark:Agent"])


def test_entry_point_group_name() -> None:
    assert ENTRY_POINT_GROUP == "bulwark.agents"


def _install_plugin(site: Path, value: str) -> None:
    """A distribution's metadata on ``site``, publishing ``value`` in the agents group."""
    dist_info = site / "bulwark_echo_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bulwark-echo-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\necho = {value}\n")


def test_discover_loads_installed_entry_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install_plugin(tmp_path / "site", f"{__name__}:Echo")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = AgentRegistry.discover()
    assert registry.get("echo") is Echo


def test_an_entry_point_that_is_not_an_agent_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install_plugin(tmp_path / "site", f"{__name__}:NotAnAgent")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(TypeError, match="is not a BaseAgent subclass"):
        AgentRegistry.discover()
