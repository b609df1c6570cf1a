"""Manifest-file change notification without polling: Linux inotify through ctypes.

The master watches the *directories* that hold the config sources (editors and
``kubectl``-style tools replace files by rename, which a watch on the file itself would lose)
and reports when any of the watched names changes.

A change counts when a file is complete: closed after writing (``IN_CLOSE_WRITE``), renamed or
moved into the folder (``IN_MOVED_TO``: editors' atomic writes, ``kubectl cp``), moved out or
deleted, a symbolic link or folder created, or its permissions changed. Writes alone
(``IN_MODIFY``) do not count: a file being rewritten in place is read once its writer closes
it. A Kubernetes ConfigMap volume updates by writing a new hidden ``..<timestamp>`` folder and
renaming the ``..data`` symbolic link over the old one (the files are links through
``..data``): the rename of any ``..`` entry in a watched folder counts, and hidden folders are
not watched (nor read: see pyroute.manifests.source). The master waits for a short settle time
after the last change (``RELOAD_DEBOUNCE``), so a burst of events is one reload.
"""
import ctypes
import ctypes.util
import os
import struct

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000
_MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB
_COMPLETE = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_ATTRIB
_EVENT = struct.Struct("iIII")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class Watcher:
    """inotify watches on the folders of ``paths``; ``fileno()`` becomes readable on change.

    ``relevant()`` drains pending events and says whether one concerned a watched path: a
    file given by name, or anything (``.yaml``/``.yml``/``.json``) inside a folder given.
    """

    def __init__(self, paths):
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.wd_dir = {}          # watch descriptor -> directory
        self.files = set()        # absolute file paths given by name
        self.dirs = set()         # directories given as such (any manifest inside counts)
        for path in paths:
            path = os.path.abspath(path)
            if os.path.isdir(path):
                self.dirs.add(path)
                for root, subdirs, _ in os.walk(path):
                    subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                    self._add(root)
            else:
                self.files.add(path)
                self._add(os.path.dirname(path))

    def _add(self, directory):
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(directory), _MASK)
        if wd >= 0:
            self.wd_dir[wd] = directory

    def fileno(self):
        return self.fd

    def relevant(self):
        hit = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return hit
            if not data:
                return hit
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                name = data[pos + _EVENT.size:pos + _EVENT.size + length].rstrip(b"\0")
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    hit = True          # events were lost: reload to be sure
                    continue
                directory = self.wd_dir.get(wd)
                if directory is None:
                    continue
                text = os.fsdecode(name)
                full = os.path.join(directory, text)
                if mask & IN_CREATE and not mask & IN_ISDIR:
                    # a regular file being created is read when it is closed; a symbolic link
                    # is complete at once
                    if not os.path.islink(full):
                        continue
                if text.startswith(".."):
                    # the ConfigMap volume's ..data swap: every file there is a link through it
                    if mask & (IN_MOVED_TO | IN_MOVED_FROM):
                        hit = True
                    continue
                if full in self.files:
                    hit = True
                elif any(directory == d or directory.startswith(d + os.sep) for d in self.dirs):
                    if text.startswith("."):
                        continue        # hidden: not read (editors' swap files, temp files)
                    if full.endswith((".yaml", ".yml", ".json")):
                        hit = True
                    if mask & IN_CREATE and mask & IN_ISDIR:
                        self._add(full)
                        hit = True      # a folder created or moved in may hold manifests
                    elif mask & IN_MOVED_TO and mask & IN_ISDIR:
                        for root, subdirs, _ in os.walk(full):
                            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                            self._add(root)
                        hit = True

    def close(self):
        os.close(self.fd)
