"""`foxgate COMMAND` and `python -m foxgate COMMAND`: every management command, from any directory.

The installed counterpart of the checkout's manage.py (which stays for people working in the source).
"""

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
    from django.core.management import execute_from_command_line

    argv = list(sys.argv if argv is None else argv)
    # Django's help and errors name the program: say `foxgate`, whichever way it was started.
    argv[0] = "foxgate"
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
