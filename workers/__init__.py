"""Celery task code that runs on workers. Tasks are thin: they receive ids,
ask the service layer whether to run, do the work, and report back."""
