from io import StringIO

from django.core.management import call_command


def run_command(*args: str) -> str:
    """Run a management command in-process and return what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
