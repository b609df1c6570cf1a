# Shared vocabulary of the engine modules; no .pyx behind it.

cdef struct Span:
    # [start, stop) into the bytes object (or buffer) that owns it; start == -1: absent
    Py_ssize_t start
    Py_ssize_t stop
