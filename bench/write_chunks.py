"""The kernel's cost of appending access log lines to a file, by the size of each write(2):
why pyroute/observability/accesslog.py writes at most WRITE_CHUNK (64 KiB) per call.

    taskset -c 0 python3 bench/write_chunks.py

200 MiB of 817-byte lines appended (O_APPEND, as the access log) to a file in the current
folder, a fresh buffer per take as the writer gets from Formatter.take(); user and system
CPU time per line (getrusage).
"""
import os, resource
line = b"x" * 816 + b"\n"
total = 200 * 1024 * 1024
for chunk_lines, slice_kib in ((350, 0), (350, 64), (350, 32), (80, 0), (1400, 64)):
    data = line * chunk_lines
    fd = os.open("write_chunks.log", os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o664)
    n = total // len(data)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        b = bytes(data)
        if slice_kib:
            v = memoryview(b); s = slice_kib * 1024
            for i in range(0, len(b), s):
                os.write(fd, v[i:i + s])
        else:
            os.write(fd, b)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    os.close(fd)
    lines = n * chunk_lines
    print("%5d KiB taken, written in %s: user %.3f sys %.3f us/line" % (len(data) // 1024, "%d KiB slices" % slice_kib if slice_kib else "one write", (r1.ru_utime - r0.ru_utime) / lines * 1e6, (r1.ru_stime - r0.ru_stime) / lines * 1e6))
os.unlink("write_chunks.log")
