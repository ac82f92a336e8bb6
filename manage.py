#!/usr/bin/env python
"""Django's command-line utility for the studio."""

import os
import sys

from studio.bootstrap import prepare_data_dir


def main() -> None:
    prepare_data_dir()  # settings only read: the data directory and its SECRET_KEY are made here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
