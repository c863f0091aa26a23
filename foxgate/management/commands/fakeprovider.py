from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Serve the bundled fake OpenAI-compatible provider on 127.0.0.1 until stopped (tests, bench, demo)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8900)
        parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")

    def handle(self, *args, port: int, latency: float, **options) -> None:
        from foxgate.fakes.openai import main

        main(["--port", str(port), "--latency", str(latency)])
