"""Process names, as nginx and HAProxy set theirs: ``pyroute: master``, ``pyroute: worker 3``.

``ps``/``top`` show the command line (``/proc/<pid>/cmdline``), rewritten with the
``setproctitle`` package; ``comm`` (``/proc/<pid>/comm``, what ``ps -o comm``, ``pkill`` and
``top``'s default view use; 15 bytes at most) is set with ``prctl(PR_SET_NAME)``.
"""
import ctypes
import ctypes.util

from setproctitle import setproctitle as _setproctitle   # a dependency (pyproject.toml)

PR_SET_NAME = 15

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):
    _prctl = None


def set_title(title, comm=None):
    """Name this process ``title`` (command line) and ``comm`` (default: ``title`` without the
    ``pyroute: `` prefix and spaces, prefixed ``pyroute-``; the kernel keeps 15 bytes)."""
    _setproctitle(title)
    if comm is None:
        comm = "pyroute-" + title.split(": ", 1)[-1].replace(" ", "")
    if _prctl is not None:
        _prctl(PR_SET_NAME, ctypes.c_char_p(comm.encode()[:15]), 0, 0, 0)
