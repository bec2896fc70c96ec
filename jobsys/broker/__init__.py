"""The Redis and Celery side: building canvases (``canvas``), sending and
inspecting them (``dispatch``), execution leases and where each task is
(``inflight``), job event streams (``events``) and leased slots (``slots``).
The service layer calls these; they never call back into it."""
