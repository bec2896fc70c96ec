"""A sandbox for user code: a process that never held jobsys's secrets.

``launcher`` builds the bubblewrap command (what the sandbox sees and who it
runs as), ``zygote`` is the program inside it (the only place user pickles
are loaded; a fresh child per chunk), and ``runner`` is the worker's side
(starts it, hands it chunks, reads back JSON frames and output lines only).
"""
