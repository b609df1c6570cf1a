"""Processes: the master (``master``), workers (``worker``) and their event loop (``loop``);
``run`` is the ``pyroute run`` command."""
