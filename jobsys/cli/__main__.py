"""``python -m jobsys.cli``: the same command as the ``jobsys`` console script."""

from jobsys.cli.main import main

main()
