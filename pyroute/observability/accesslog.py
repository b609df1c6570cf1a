"""The access log: one line per finished exchange, in Traefik's formats and field names.

Traefik's pkg/middlewares/accesslog (logger.go, logdata.go, logger_formatters.go) is the
spec. pyroute does not run it as a middleware: each worker appends ``AccessLogger.observe``
to ``Env.observers`` (engine/conn.pyx calls it once when an exchange ends). That is
``engine.accesslog.Formatter.observe``: it reads the finished exchange, applies the filters
and field modes (a plan made once here, from the configuration) and appends the line to one
byte buffer, all in C. pyroute/observability/accesslog_ref.py says the same in Python.

A writer thread takes the whole buffer every FLUSH_INTERVAL (sooner when it is half full)
and writes it in writes of at most WRITE_CHUNK bytes, cut at line ends, in C with the GIL
released once per batch (Formatter.write_to: the loop never waits on the disk or a pipe,
and the two threads hand the GIL over twice per batch, not twice per write). Lines past the
bound (``bufferingSize`` lines, DEFAULT_LINES without it) while the writer is behind are
counted and reported in pyroute's log, never waited for. ``reopen`` (SIGUSR1) closes and
reopens the file, for logrotate.

Routes with access logs off (``observability.accessLogs: false``, or an @internal service
without ``addInternals``) cost one attribute read; without ``accessLog`` nothing runs.
"""
import os
import threading

from .._engine.accesslog import DEFAULT_LINES, Formatter, write_lines
from ..server.log import log

FLUSH_INTERVAL = 0.05           # seconds between the writer thread's takes of the buffer
REPORT_INTERVAL = 10.0          # at most one "lines dropped" log line per interval
# the most one write(2) carries: the kernel copies a 64 KiB write into the page cache for
# about a third of what a 300 KiB one costs per byte (0.4-0.6 against 1.4-1.8 us per 800-byte
# line on the 2-core test machine: bench/results/observability-20261203.txt)
WRITE_CHUNK = 65536

__all__ = ["AccessLogger", "DEFAULT_LINES", "tls_fields"]

_TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_CIPHERS = None


def _go_ciphers():
    from ..tls import CIPHER_SUITES
    names = {v: k for k, v in CIPHER_SUITES.items()}
    for n in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
              "TLS_CHACHA20_POLY1305_SHA256"):
        names[n] = n
    return names


def tls_fields(ex):
    """(TLSVersion, TLSCipher, TLSClientSubject or None) of a TLS exchange, Go's names; None
    when the connection is not (any more) a pyOpenSSL one."""
    global _CIPHERS
    stream = getattr(ex.conn, "sock", None)
    conn = getattr(stream, "conn", stream)     # TLSStream: its pyOpenSSL Connection
    try:
        version = conn.get_protocol_version_name()
        cipher = conn.get_cipher_name()
    except Exception:
        return None
    if _CIPHERS is None:
        _CIPHERS = _go_ciphers()
    try:
        cert = conn.get_peer_certificate()
    except Exception:
        cert = None
    return (_TLS_VERSIONS.get(version, version), _CIPHERS.get(cipher, cipher),
            _subject(cert) if cert is not None else None)


def _subject(cert):
    # Go's pkix.Name.String(): RFC 2253 order (most specific first), comma-separated
    short = {b"CN": "CN", b"O": "O", b"OU": "OU", b"C": "C", b"L": "L", b"ST": "ST",
             b"street": "STREET", b"postalCode": "POSTALCODE", b"serialNumber": "SERIALNUMBER"}
    parts = []
    for k, v in reversed(cert.get_subject().get_components()):
        parts.append("%s=%s" % (short.get(k, k.decode()), v.decode("utf-8", "replace")))
    return ",".join(parts)


class _Writer:
    """The thread that takes the formatter's buffer and writes it to the file."""

    def __init__(self, path, formatter):
        self.path = path
        self.formatter = formatter
        self.fd = 1
        self.dropped_total = 0
        # lines failed writes lost: appended by the writer, popped by the loop (each list
        # operation atomic under the GIL, where a shared += is not)
        self.lost = []
        self.reported_at = 0.0
        self.reopen_wanted = False
        self.stopping = False
        self.event = threading.Event()
        formatter.wake = self.event.set
        if path:
            self.fd = self._open()
        self.thread = threading.Thread(target=self._run, name="pyroute-accesslog",
                                       daemon=True)
        self.thread.start()

    def _open(self):
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        # as Traefik: O_RDWR|O_CREATE|O_APPEND, 0664 (a FIFO opens without a reader)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o664)

    def _run(self):
        write_to = self.formatter.write_to
        while True:
            if self.reopen_wanted:
                self._reopen()
            # the buffer is taken under the GIL (the loop never sees it half taken), then
            # written in one release of it: one GIL hand-off per interval, not one per write
            r = write_to(self.fd, WRITE_CHUNK)
            if r is not None:
                if r[1]:
                    self._failed(*r)
            elif self.stopping:
                return
            if not self.stopping:
                # one look per interval: under load a whole interval's lines in one batch,
                # and no wake-up (nor GIL hand-off) per request; a buffer half full wakes
                # it sooner (Formatter.wake)
                self.event.wait(FLUSH_INTERVAL)
                self.event.clear()

    def _write(self, data):
        """``data`` (whole lines) written as the buffer is (engine write_lines)."""
        lost, err = write_lines(self.fd, data, WRITE_CHUNK)
        if err:
            self._failed(lost, err)

    def _failed(self, lost, err):
        log("error", "cannot write the access log", filePath=self.path or "stdout",
            error=os.strerror(err))
        # the lines of what is left are lost: counted with the dropped ones
        self.lost.append(lost)

    def _reopen(self):
        self.reopen_wanted = False
        if not self.path:
            return
        try:
            fd = self._open()
        except OSError as e:
            log("error", "Error rotating access log", filePath=self.path,
                error=e.strerror or str(e))
            return
        old, self.fd = self.fd, fd
        if old > 2:
            os.close(old)

    def report(self, now, final=False):
        """Called from the loop: one log line per REPORT_INTERVAL while lines are dropped."""
        f = self.formatter
        if (f.dropped or self.lost) and (final or now >= self.reported_at + REPORT_INTERVAL):
            dropped = f.dropped
            f.dropped = 0                 # the loop's own counter (the formatter's)
            while self.lost:
                dropped += self.lost.pop()
            self.dropped_total += dropped
            log("warn", "access log lines could not be written in time and were dropped",
                dropped=dropped, droppedTotal=self.dropped_total,
                filePath=self.path or "stdout", buffer=f.limit)
            self.reported_at = now

    def close(self, timeout=1.0):
        self.stopping = True
        self.event.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            # the writer is stuck on the file: what it did not take is lost, and said so
            self.formatter.dropped += self.formatter.lines
            self.formatter.take()
        self.report(0.0, final=True)


class AccessLogger:
    """One worker's access log (see the module docstring); ``cfg``: pyroute.static.AccessLog."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.formatter = Formatter(cfg, tls_fields)
        self.observe = self.formatter.observe
        self.writer = _Writer(cfg.file_path, self.formatter)

    # ---- from the loop, off the per-request path -------------------------------------------

    def tick(self, now):
        self.writer.report(now)

    def reopen(self):
        self.writer.reopen_wanted = True

    def close(self):
        self.writer.close()
