"""redact(): every secret shape is removed, other text is left alone, registered secrets go."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from backend.core.redact import (
    REDACTED,
    clear_registered_secrets,
    redact,
    register_secret,
)

OPENAI_KEY = "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL"
PROJECT_KEY = "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90_Uv-Wx"
ANTHROPIC_KEY = "sk-ant-api03-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90-AAAA"
BULWARK_KEY = "bwk_q3Vb7Xk9-Lm2Np4_Rs6Tu8Vw0Yz1Ab3Cd5Ef7Gh9"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"


@pytest.fixture(autouse=True)
def no_registered_secrets() -> Iterator[None]:
    clear_registered_secrets()
    yield
    clear_registered_secrets()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"key {OPENAI_KEY} failed", f"key {REDACTED} failed", id="openai-key"),
        pytest.param(f"using {PROJECT_KEY}.", f"using {REDACTED}.", id="openai-project-key"),
        pytest.param(f"({ANTHROPIC_KEY})", f"({REDACTED})", id="anthropic-key"),
        pytest.param(
            "Incorrect API key provided: sk-proj-********************abcd.",
            f"Incorrect API key provided: {REDACTED}.",
            id="masked-key-echoed-by-provider",
        ),
        pytest.param(f"client key {BULWARK_KEY}", f"client key {REDACTED}", id="bulwark-key"),
        pytest.param(
            f"Authorization: Bearer {TOKEN}",
            f"Authorization: Bearer {REDACTED}",
            id="authorization-bearer",
        ),
        pytest.param(
            "authorization: Basic dXNlcjpwYXNz",
            f"authorization: Basic {REDACTED}",
            id="authorization-basic",
        ),
        pytest.param(
            "{'Authorization': 'Bearer abc123', 'Accept': 'json'}",
            f"{{'Authorization': 'Bearer {REDACTED}', 'Accept': 'json'}}",
            id="authorization-in-dict-repr",
        ),
        pytest.param(
            f"sent Bearer {TOKEN} upstream", f"sent Bearer {REDACTED} upstream", id="bearer"
        ),
        pytest.param("x-api-key: abc123secret", f"x-api-key: {REDACTED}", id="x-api-key-header"),
        pytest.param(
            '{"x-api-key": "abc123secret"}', f'{{"x-api-key": "{REDACTED}"}}', id="x-api-key-json"
        ),
        pytest.param(
            "GET https://api.example.com/v1/models?api_key=abc123&limit=5",
            f"GET https://api.example.com/v1/models?api_key={REDACTED}&limit=5",
            id="api_key-query",
        ),
        pytest.param(
            "GET https://generativelanguage.googleapis.com/v1/models?key=AIzaSyA1b2c3",
            f"GET https://generativelanguage.googleapis.com/v1/models?key={REDACTED}",
            id="key-query",
        ),
        pytest.param(
            "callback?state=1&token=abc.def-ghi",
            f"callback?state=1&token={REDACTED}",
            id="token-query",
        ),
        pytest.param(
            "OPENAI_API_KEY=plainvalue BULWARK_ADMIN_TOKEN=letmein123",
            f"OPENAI_API_KEY={REDACTED} BULWARK_ADMIN_TOKEN={REDACTED}",
            id="env-assignments",
        ),
        pytest.param(
            '{"model": "gpt-4o", "api_key": "abc\\"123", "n": 1}',
            f'{{"model": "gpt-4o", "api_key": "{REDACTED}", "n": 1}}',
            id="api_key-json-with-escaped-quote",
        ),
        pytest.param(
            "{'access_token': 'abc', 'client_secret': 'xyz', 'password': 'hunter2'}",
            f"{{'access_token': '{REDACTED}', 'client_secret': '{REDACTED}', "
            f"'password': '{REDACTED}'}}",
            id="secret-fields-in-dict-repr",
        ),
        pytest.param(
            "postgresql+asyncpg://bulwark:s3cr3t@db.internal:5432/bulwark",
            f"postgresql+asyncpg://bulwark:{REDACTED}@db.internal:5432/bulwark",
            id="url-password",
        ),
        pytest.param(
            "redis://:p@ss@cache:6379/0",
            f"redis://:{REDACTED}@cache:6379/0",
            id="url-password-with-at",
        ),
    ],
)
def test_secret_shapes_are_removed(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("Rate limit reached for gpt-4o-mini on tokens per min.", id="rate-limit"),
        pytest.param("breaker key=openai:gpt-4o-mini opened after 5 failures", id="breaker-key"),
        pytest.param(
            '{"key": "anthropic:claude-3-5-haiku-latest", "state": "open"}', id="json-key"
        ),
        pytest.param("max_tokens=1024 prompt_tokens=12 total_tokens=40", id="token-counts"),
        pytest.param("Send an Authorization header with a Bearer token.", id="prose"),
        pytest.param("the task-risk-assessment-for-sk-learn run", id="sk-inside-words"),
        pytest.param("http://127.0.0.1:8000/v1/tasks?status=queued&limit=10", id="url"),
        pytest.param("ssh://git@github.com/org/repo.git", id="url-user-only"),
        pytest.param("Incorrect API key provided.", id="mentions-keys"),
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_registered_secrets_are_removed_whatever_their_shape() -> None:
    register_secret("plain-looking-value-42")
    register_secret("hunter2hunter2")
    assert redact("a plain-looking-value-42 and hunter2hunter2!") == f"a {REDACTED} and {REDACTED}!"


def test_the_longest_registered_secret_wins() -> None:
    register_secret("abcdefgh")
    register_secret("abcdefgh-longer")
    assert redact("x abcdefgh-longer y abcdefgh") == f"x {REDACTED} y {REDACTED}"


def test_short_and_blank_values_are_not_registered() -> None:
    register_secret("")
    register_secret("short")
    register_secret("   seven  ")
    assert redact("a short word, seven of them") == "a short word, seven of them"


def test_clear_registered_secrets() -> None:
    register_secret("my-admin-token-value")
    clear_registered_secrets()
    assert redact("my-admin-token-value") == "my-admin-token-value"


def test_register_secret_is_thread_safe() -> None:
    values = [f"secret-value-{i:04d}" for i in range(80)]

    def register(chunk: list[str]) -> None:
        for value in chunk:
            register_secret(value)

    threads = [threading.Thread(target=register, args=(values[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redact(" ".join(values)) == " ".join([REDACTED] * len(values))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a." * 20_000, id="dotted"),
        pytest.param('"' + "a_" * 20_000, id="quoted-underscored"),
        pytest.param('"api_key": "x' * 4_000, id="unclosed-json-values"),
        pytest.param("http://u:" + "x" * 40_000, id="url-without-host"),
    ],
)
def test_long_adversarial_text_is_redacted_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 2.0  # quadratic patterns take far longer here
