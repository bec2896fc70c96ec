"""The ``jobsys`` command line: ``main`` (the group, global errors and exit
codes) and one module per command family. Each command calls the service
layer, or the HTTP client for the job commands; none touches SQL, Redis or
Celery itself. The console script is ``jobsys.cli.main:main``."""
