from django.core.management.base import BaseCommand, CommandParser

from foxgate.cli import parse_credits
from tasks.services import price_set


class Command(BaseCommand):
    help = "Set a model's price in credits per million tokens, creating the model if it is new."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--input", required=True, help="credits per million input tokens")
        parser.add_argument("--output", required=True, help="credits per million output tokens")

    def handle(self, *args, model: str, input: str, output: str, **options) -> None:
        price = price_set(
            model_name=model,
            input_per_million=parse_credits(input, "--input"),
            output_per_million=parse_credits(output, "--output"),
        )
        self.stdout.write(f"{model}: price version {price.version}")
