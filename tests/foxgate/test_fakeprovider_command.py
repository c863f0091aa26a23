"""`foxgate fakeprovider --provider P`: each fake as an operator starts it, driven by its official SDK."""

import subprocess
import sys
from collections.abc import Callable

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from foxgate.fakes.cli import serving

HELLO = "hello fake world"


def ask_openai(base_url: str, api_key: str) -> str:
    with openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=5) as sdk:
        completion = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": HELLO}])
    return completion.choices[0].message.content or ""


def ask_anthropic(base_url: str, api_key: str) -> str:
    with anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=5) as sdk:
        message = sdk.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": HELLO}])
    return message.content[0].text  # type: ignore[union-attr]


def ask_gemini(base_url: str, api_key: str) -> str:
    options = types.HttpOptions(
        base_url=base_url,
        api_version="v1beta",
        timeout=5000,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    with genai.Client(api_key=api_key, http_options=options) as sdk:
        return sdk.models.generate_content(model="m", contents=HELLO).text or ""


def status_of(error: Exception) -> int:
    """The HTTP status each SDK reports on its own error type."""
    return error.code if isinstance(error, errors.APIError) else error.status_code  # type: ignore[attr-defined]


ASK: dict[str, Callable[[str, str], str]] = {
    "openai": ask_openai,
    "anthropic": ask_anthropic,
    "gemini": ask_gemini,
}
SDK_ERRORS = (openai.APIStatusError, anthropic.APIStatusError, errors.APIError)


@pytest.mark.parametrize("provider", sorted(ASK))
def test_fakeprovider_speaks_each_providers_wire_format_with_the_reply_and_key_it_was_given(
    provider: str,
) -> None:
    with serving(provider, "--reply", "from the command", "--api-key", "k-right", command=True) as url:
        assert ASK[provider](url, "k-right") == "from the command"
        with pytest.raises(SDK_ERRORS) as refused:
            ASK[provider](url, "k-wrong")
    assert status_of(refused.value) == 401


@pytest.mark.parametrize("provider", sorted(ASK))
def test_fakeprovider_forces_the_status_it_was_told_to(provider: str) -> None:
    with (
        serving(provider, "--status", "429", "--retry-after", "7", command=True) as url,
        pytest.raises(SDK_ERRORS) as refused,
    ):
        ASK[provider](url, "k")
    assert status_of(refused.value) == 429


def test_fakeprovider_hang_holds_the_request_until_the_client_gives_up() -> None:
    with (
        serving("openai", "--hang", command=True) as url,
        openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=0.5) as sdk,
        pytest.raises(openai.APITimeoutError),
    ):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": HELLO}])


def test_fakeprovider_refuses_nonsense_knobs_with_a_clear_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "foxgate", "fakeprovider", "--port", "0", "--status", "200"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "knob 'status' must be an HTTP error status (400-599), got 200" in done.stderr
