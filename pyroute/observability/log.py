"""pyroute's own log lines, in the shapes Traefik's log writes (static ``log``).

Traefik logs with zerolog (cmd/traefik/logger.go): ``format: json`` writes zerolog's JSON
(``{"level":"info",<fields>,"time":"<RFC 3339>","message":"..."}``); any other format
(``common``, the default) goes through zerolog's ConsoleWriter with ``TimeFormat: RFC3339``:
``<time> <LVL> <message> <field>=<value> ...`` — fields sorted by name, ``error`` first,
colourised unless ``noColor`` is set, the log goes to a file (``filePath``) or
``NO_COLOR`` is in the environment (zerolog's rule).

pyroute adds one field Traefik has not: ``pid`` (several processes share the log). Lines are
written whole with one ``write`` (O_APPEND), so processes never interleave within a line.
SIGUSR1 reopens ``filePath`` (logrotate), in the master and in every worker.
"""
import json
import os
import sys
import time

# zerolog levels
_LEVELS = {"TRACE": -1, "DEBUG": 0, "INFO": 1, "WARN": 2, "WARNING": 2, "ERROR": 3,
           "FATAL": 4, "PANIC": 5, "DISABLED": 7}
_NAMES = {-1: "trace", 0: "debug", 1: "info", 2: "warn", 3: "error", 4: "fatal", 5: "panic"}
_SHORT = {-1: "TRC", 0: "DBG", 1: "INF", 2: "WRN", 3: "ERR", 4: "FTL", 5: "PNC"}
# zerolog ConsoleWriter's LevelColors (v1.33)
_COLORS = {-1: 34, 0: 0, 1: 32, 2: 33, 3: 31, 4: 31, 5: 31}


class _State:
    threshold = 1
    json = False
    color = True
    path = ""
    fd = 2            # stderr unless filePath


_s = _State()


def set_level(name):
    _s.threshold = _LEVELS.get(str(name).upper(), 1)


def configure(cfg):
    """Apply the static ``log`` section (pyroute.static.Log)."""
    set_level(cfg.level)
    _s.json = cfg.format == "json"
    _s.path = cfg.file_path or ""
    # zerolog's ConsoleWriter colours unless NoColor (Traefik: noColor or a filePath) or
    # the NO_COLOR environment variable is set
    _s.color = not (cfg.no_color or _s.path or os.environ.get("NO_COLOR"))
    if _s.path:
        _open()


def _open():
    try:
        d = os.path.dirname(_s.path)
        if d:
            os.makedirs(d, exist_ok=True)
        fd = os.open(_s.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
    except OSError as e:
        _s.fd = 2
        log("error", "cannot open the log file; logging to stderr", filePath=_s.path,
            error=e.strerror or str(e))
        return
    old, _s.fd = _s.fd, fd
    if old > 2:
        os.close(old)


def reopen():
    """SIGUSR1: close and reopen ``filePath`` (a renamed file is let go)."""
    if _s.path:
        _open()


def enabled(level):
    return _LEVELS.get(level.upper(), 1) >= _s.threshold


def log(level, msg, **fields):
    lvl = _LEVELS.get(level.upper(), 1)
    if lvl < _s.threshold:
        return
    fields["pid"] = os.getpid()
    line = _json_line(lvl, msg, fields) if _s.json else _console_line(lvl, msg, fields)
    data = line.encode("utf-8", "replace")
    try:
        os.write(_s.fd, data)
    except OSError:
        pass


def _rfc3339(t):
    lt = time.localtime(t)
    off = lt.tm_gmtoff
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        off = abs(off)
        zone = "%s%02d:%02d" % (sign, off // 3600, off % 3600 // 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + zone


def _json_line(lvl, msg, fields):
    # zerolog: level first, then the event's fields, then the timestamp hook, then message
    out = {"level": _NAMES.get(lvl, "info")}
    for k, v in fields.items():
        out[k] = v if isinstance(v, (int, float, bool)) or v is None else str(v)
    out["time"] = _rfc3339(time.time())
    out["message"] = str(msg)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n"


def _colorize(s, c):
    if not _s.color or not c:
        return s
    return "\x1b[%dm%s\x1b[0m" % (c, s)


def _needs_quote(s):
    for ch in s:
        if ch < " " or ch > "~" or ch in ' \\"':
            return True
    return False


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    s = str(v)
    return json.dumps(s, ensure_ascii=False) if _needs_quote(s) else s


def _console_line(lvl, msg, fields):
    parts = [_colorize(_rfc3339(time.time()), 90), _colorize(_SHORT.get(lvl, "???"),
                                                             _COLORS.get(lvl, 0))]
    if msg:
        parts.append(str(msg))
    names = sorted(fields)
    if "error" in names:
        names.remove("error")
        names.insert(0, "error")
    for k in names:
        if k == "error":
            parts.append(_colorize("error=", 36) + _colorize(_colorize(_value(fields[k]), 1),
                                                           31))
        else:
            parts.append(_colorize(k + "=", 36) + _value(fields[k]))
    return " ".join(parts) + "\n"
