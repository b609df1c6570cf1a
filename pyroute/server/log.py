"""Process log lines: one line per event on stderr, Traefik-like ``level=... msg=...``."""
import os
import sys
import time

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40}
_threshold = 20


def set_level(name):
    global _threshold
    _threshold = _LEVELS.get(str(name).upper(), 20)


def log(level, msg, **fields):
    if _LEVELS.get(level.upper(), 20) < _threshold:
        return
    extra = "".join(" %s=%s" % (k, _quote(v)) for k, v in fields.items())
    line = "%s level=%s pid=%d msg=%s%s\n" % (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), level.lower(), os.getpid(),
        _quote(msg), extra)
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _quote(v):
    s = str(v)
    if not s or any(c in s for c in ' "='):
        return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return s
