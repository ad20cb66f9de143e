#!/usr/bin/env python
"""Django's command-line utility for the data engine."""
import os
import sys


def _into_the_venv() -> None:
    """`python manage.py ...` with a Python that lacks Django (the system's, the README's command
    typed as is): run the same command with make run's .venv instead, when there is one."""
    try:
        import django  # noqa: F401
    except ImportError:
        venv_python = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv", "bin", "python")
        if os.path.exists(venv_python) and not os.environ.get("ENGINE_MANAGE_IN_VENV"):
            os.environ["ENGINE_MANAGE_IN_VENV"] = "1"  # once: a .venv without Django fails below, not in a loop
            os.execv(venv_python, [venv_python, *sys.argv])
        raise


def main() -> None:
    _into_the_venv()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engine.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
