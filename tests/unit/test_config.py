"""Settings: the reference defaults, how the environment is read, and the messages a bad
environment gets. The conftest clears every BULWARK_/OPENAI_/ANTHROPIC_ variable and runs each
test in its own empty directory, so no developer's environment or ``.env`` leaks in."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.config import SIMULATOR_ROUTES, Settings
from backend.core.breaker_state import BreakerConfig
from backend.core.retry_policy import RecoveryConfig


def test_defaults_equal_the_reference() -> None:
    settings = Settings()
    retry = settings.recovery_config()
    assert (
        retry.max_retries,
        retry.initial_wait,
        retry.multiplier,
        retry.max_wait,
        retry.attempt_timeout,
    ) == (3, 0.1, 2.0, 10.0, 30.0)
    breaker = settings.breaker_config()
    assert (breaker.threshold, breaker.open_seconds) == (5, 60.0)
    assert breaker.half_open_max_calls == 1
    assert breaker.cache_seconds == 0.5


def test_settings_defaults_equal_the_core_defaults() -> None:
    """The environment's defaults and the library's defaults cannot drift apart."""
    settings = Settings()
    assert settings.recovery_config() == RecoveryConfig()
    assert settings.breaker_config() == BreakerConfig()


def test_other_defaults() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./bulwark.db"
    assert settings.admin_token is None
    assert settings.routes == {}
    assert settings.agents == []
    assert settings.openai_api_key is None and settings.anthropic_api_key is None
    assert settings.admin_key_file == ".bulwark/admin.key"
    assert settings.embedded_workers is True


def test_simulator_routes_when_no_route_is_configured() -> None:
    assert Settings().effective_routes() == SIMULATOR_ROUTES
    assert set(SIMULATOR_ROUTES) == {"review", "code", "default"}
    assert all(t.startswith("sim:") for ts in SIMULATOR_ROUTES.values() for t in ts)


def test_provider_keys_without_routes_route_to_those_providers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0000000000")
    assert Settings().effective_routes() == {
        "review": ["openai:gpt-4o-mini"],
        "code": ["openai:gpt-4o-mini"],
        "default": ["openai:gpt-4o-mini"],
    }
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0000000000")
    both = ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest"]
    assert Settings().effective_routes()["review"] == both


def test_configured_routes_replace_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_ROUTES", '{"review": ["openai:gpt-4o-mini"]}')
    assert Settings().effective_routes() == {"review": ["openai:gpt-4o-mini"]}


def test_routes_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BULWARK_ROUTES",
        '{"review": ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest"],'
        ' "code": ["ollama:library/llama3:8b"]}',
    )
    assert Settings().routes == {
        "review": ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest"],
        "code": ["ollama:library/llama3:8b"],  # the model may contain ':' and '/'
    }


def test_blank_routes_mean_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_ROUTES", "  ")
    assert Settings().routes == {}


def test_bad_routes_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_ROUTES", "{bad")
    with pytest.raises(ValidationError, match="BULWARK_ROUTES is not valid JSON"):
        Settings()


@pytest.mark.parametrize("target", ["gpt-4o-mini", "openai:", ":gpt-4o-mini"])
def test_a_target_must_be_provider_colon_model(
    monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    monkeypatch.setenv("BULWARK_ROUTES", f'{{"review": ["{target}"]}}')
    with pytest.raises(ValidationError, match="is not of the form provider:model") as info:
        Settings()
    assert "'review'" in str(info.value)


def test_a_route_needs_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_ROUTES", '{"review": []}')
    with pytest.raises(ValidationError, match="route 'review' has no targets"):
        Settings()


def test_agents_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_AGENTS", " my_pkg.agents:Summarizer, ,other:Agent ,")
    assert Settings().agents == ["my_pkg.agents:Summarizer", "other:Agent"]


@pytest.mark.parametrize("prefix", ["", "BULWARK_"])
def test_provider_settings_take_the_sdk_names_and_bulwark_names(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv(f"{prefix}OPENAI_API_KEY", "sk-test-0000000000000000")
    monkeypatch.setenv(f"{prefix}OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv(f"{prefix}ANTHROPIC_API_KEY", "sk-ant-test-000000000000")
    monkeypatch.setenv(f"{prefix}ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    settings = Settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-test-0000000000000000"
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-test-000000000000"
    assert settings.anthropic_base_url == "http://127.0.0.1:9"


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0000000000000000")
    monkeypatch.setenv("BULWARK_ADMIN_TOKEN", "admin-token-000000")
    text = repr(Settings())
    assert "sk-test-0000000000000000" not in text
    assert "admin-token-000000" not in text


def test_retry_and_breaker_knobs_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "BULWARK_RETRY_MAX_RETRIES": "5",
        "BULWARK_RETRY_INITIAL_WAIT": "0.25",
        "BULWARK_RETRY_MULTIPLIER": "3",
        "BULWARK_RETRY_MAX_WAIT": "4",
        "BULWARK_RETRY_ATTEMPT_TIMEOUT": "12",
        "BULWARK_RETRY_AFTER_CEILING": "20",
        "BULWARK_RETRY_BUDGET_RATIO": "0.5",
        "BULWARK_RETRY_BUDGET_MIN": "2",
        "BULWARK_RETRY_BUDGET_WINDOW": "30",
        "BULWARK_BREAKER_THRESHOLD": "3",
        "BULWARK_BREAKER_OPEN_SECONDS": "15",
        "BULWARK_BREAKER_HALF_OPEN_MAX_CALLS": "2",
        "BULWARK_BREAKER_PROBE_LEASE_SECONDS": "40",
        "BULWARK_BREAKER_CACHE_SECONDS": "0.25",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.recovery_config() == RecoveryConfig(
        max_retries=5,
        initial_wait=0.25,
        multiplier=3.0,
        max_wait=4.0,
        attempt_timeout=12.0,
        retry_after_ceiling=20.0,
        budget_ratio=0.5,
        budget_min_retries=2,
        budget_window=30.0,
    )
    assert settings.breaker_config() == BreakerConfig(
        threshold=3,
        open_seconds=15.0,
        half_open_max_calls=2,
        probe_lease_seconds=40.0,
        cache_seconds=0.25,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BULWARK_BREAKER_CACHE_SECONDS", "1.5"),  # an open breaker must reach others in 1 s
        ("BULWARK_BREAKER_THRESHOLD", "0"),
        ("BULWARK_RETRY_MAX_RETRIES", "-1"),
        ("BULWARK_RETRY_MULTIPLIER", "0.5"),
        ("BULWARK_RETRY_ATTEMPT_TIMEOUT", "0"),
        ("BULWARK_LOG_FORMAT", "xml"),
        ("BULWARK_HISTORY_BUFFER_LIMIT", "10"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_dotenv_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "BULWARK_DATABASE_URL=sqlite+aiosqlite:///./other.db\nOPENAI_API_KEY=sk-from-dotenv-000000\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./other.db"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-dotenv-000000"


def test_the_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BULWARK_BREAKER_THRESHOLD=7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BULWARK_BREAKER_THRESHOLD", "9")
    assert Settings().breaker_threshold == 9


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.breaker_threshold = 1  # type: ignore[misc]
