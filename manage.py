#!/usr/bin/env python
import os
import sys


def main() -> None:
    if sys.argv[1:2] == ["gpu_worker"]:
        # A GPU host needs no database and no settings: hand over before Django reads DATABASE_URL.
        from launches.gpu.main import hand_over

        sys.exit(hand_over(sys.argv[2:]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aifred_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
