from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.fakes.anthropic import FakeAnthropic
from foxgate.fakes.gemini import FakeGemini
from foxgate.fakes.openai import FakeOpenAI
from foxgate.fakes.server import (
    CONTROL_PREFIX,
    FakeProviderServer,
    add_knob_arguments,
    knob_options,
    serve_forever,
)

FAKES: dict[str, type[FakeProviderServer]] = {
    "openai": FakeOpenAI,
    "anthropic": FakeAnthropic,
    "gemini": FakeGemini,
}


class Command(BaseCommand):
    help = (
        "Serve a bundled fake provider (OpenAI-compatible, Anthropic Messages or Gemini generateContent) "
        "on 127.0.0.1 until stopped, for the demo, tests, benchmarks and trying channels without an "
        f"upstream account. Every knob below can also be changed while it runs: POST {CONTROL_PREFIX}config "
        f"with a JSON object of knobs; GET {CONTROL_PREFIX}requests lists what it received."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider",
            choices=sorted(FAKES),
            default="openai",
            help="wire format to speak (default openai)",
        )
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8900, help="port to listen on; 0 picks a free one")
        add_knob_arguments(parser)

    def handle(self, *args: Any, provider: str, host: str, port: int, **options: Any) -> None:
        try:
            server = FAKES[provider](port=port, host=host, **knob_options(options))
        except (TypeError, ValueError) as error:
            raise CommandError(str(error)) from None
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        serve_forever(server)
