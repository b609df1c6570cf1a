# cython: language_level=3
"""One request and its response: the exchange, and the response head a middleware edits.

The connection that carries a request (``conn.ClientConn`` for HTTP/1.1; HTTP/2 streams will
carry theirs the same way, many at once) owns the socket, its buffers and keep-alive; the
exchange owns the request: the route it matched, how far the middleware chain got, the server
picked, what was answered and how much was sent. Middlewares and services get the exchange as
their context, never the connection, so nothing in them assumes one request per connection.

The chain has two phases, as Traefik's nested handlers have:
- the request phase runs in order: ``on_request(ex)`` returns None (go on), the bytes of a
  complete response (answer now) or ``WAIT`` (a sub-request, a thread-pool job or a timer is
  under way; the middleware calls ``ex.resume()`` or ``ex.answer(response)`` later, on the
  loop, and the connection goes on from there);
- the response phase runs in reverse over the middlewares the request passed:
  ``on_response(ex, head)`` edits a ``ResponseHead`` (status, headers; or replaces the
  response) — the backend's, a later middleware's answer, pyroute's own errors alike;
- ``on_complete(ex)`` runs once when the exchange ends, whatever the outcome (the hook
  limits that count requests in flight release from, and what observation reads).

Routes whose middlewares are fixed at load never build a ResponseHead: their header edits are
compiled into the route's Forwarder, and the no-middleware path touches none of this but the
exchange object itself (one allocation from a free list).
"""
cimport cython
from pyroute._engine.http1 cimport Request
from pyroute._engine.responses import REASONS as _REASONS


class _Wait:
    """What ``on_request`` returns when it will resume or answer the exchange later."""
    __slots__ = ()

    def __repr__(self):
        return "WAIT"

    def __reduce__(self):
        return "WAIT"


WAIT = _Wait()


@cython.final
@cython.freelist(32)
cdef class Exchange:
    """One request and its response (see the module docstring); built by the connection."""

    def resume(self):
        """After ``WAIT``: go on with the next middleware of the chain (on the loop)."""
        if not self.waiting or self.cancelled or self.done:
            return
        self.waiting = False
        self.conn.exchange_resume(self)

    def answer(self, bytes response):
        """After ``WAIT``: answer with ``response`` (a complete HTTP/1.1 response)."""
        if not self.waiting or self.cancelled or self.done:
            return
        self.waiting = False
        self.conn.exchange_answer(self, response)

    def wrap_body(self, transform):
        """From ``on_response``: pass the response body through ``transform`` —
        ``feed(bytes) -> bytes`` per piece, ``finish() -> bytes`` at its end. The length
        changes, so the connection re-frames it (chunked to HTTP/1.1 clients); transforms
        added by inner middlewares see the body first."""
        if self.transforms is None:
            self.transforms = [transform]
        else:
            self.transforms.append(transform)

    def get_vars(self):
        if self.vars is None:
            self.vars = {}
        return self.vars

    cdef void complete(self) except *:
        # the exchange is over (answered, proxied, failed or cut): completion hooks, once
        cdef list hooks = self.completers
        if self.done:
            return
        self.done = True
        if hooks is None:
            return
        self.completers = None
        for hook in hooks:
            try:
                hook(self)
            except Exception as e:      # a middleware's hook never takes the worker down
                from pyroute.server.log import log
                log("error", "middleware completion hook failed",
                    error="%s: %s" % (type(e).__name__, e))

    def __repr__(self):
        return "<Exchange %r %r status=%d>" % (
            self.req.method if self.req is not None else None, self.path, self.status)


cdef bytes _lower(bytes name):
    return name.lower()


@cython.final
cdef class ResponseHead:
    """A response head as the response phase sees it: status, reason and header lines.

    ``parse`` reads the head pyroute is about to send (the backend's after the Forwarder's
    rewrite, or an answer of pyroute's own); ``serialize`` writes it back. Framing headers
    (Content-Length, Transfer-Encoding, Connection) belong to the connection: a middleware
    leaves them alone unless it replaces the response (``replace``)."""

    def __init__(self, int status=200, headers=(), bytes body=None):
        self.status = status
        self.reason = b""
        self.lines = [[n, v] for n, v in headers]
        self.body = body
        self.replaced = False
        self.version_10 = False

    @staticmethod
    def parse(bytes head, bytes body=None):
        """``head``: a status line and header lines (the blank line optional)."""
        cdef ResponseHead h = ResponseHead.__new__(ResponseHead)
        cdef Py_ssize_t end = head.find(b"\r\n\r\n")
        cdef list raw = (head if end < 0 else head[:end]).split(b"\r\n")
        cdef bytes first = raw[0]
        h.version_10 = first.startswith(b"HTTP/1.0")
        h.status = int(first[9:12])
        # Go writes its own reason phrase for the status (the Forwarder did already): a
        # status a middleware changes gets the right one
        h.reason = b""
        h.lines = []
        for line in raw[1:]:
            if not line:
                continue
            name, _, value = line.partition(b":")
            h.lines.append([name, value.strip(b" \t")])
        h.body = body
        h.replaced = False
        return h

    def get(self, bytes name):
        """The first value of ``name`` (any case), or None."""
        cdef bytes low = name.lower()
        for line in self.lines:
            if (<bytes> line[0]).lower() == low:
                return line[1]
        return None

    def get_all(self, bytes name):
        cdef bytes low = name.lower()
        return [line[1] for line in self.lines if (<bytes> line[0]).lower() == low]

    def set(self, bytes name, bytes value):
        """Replace every ``name`` line with one (where the first was, else at the end)."""
        cdef bytes low = name.lower()
        cdef list out = []
        cdef bint placed = False
        for line in self.lines:
            if (<bytes> line[0]).lower() == low:
                if not placed:
                    out.append([name, value])
                    placed = True
            else:
                out.append(line)
        if not placed:
            out.append([name, value])
        self.lines = out

    def add(self, bytes name, bytes value):
        self.lines.append([name, value])

    def remove(self, bytes name):
        cdef bytes low = name.lower()
        self.lines = [line for line in self.lines if (<bytes> line[0]).lower() != low]

    @property
    def headers(self):
        return [(line[0], line[1]) for line in self.lines]

    def replace(self, int status, headers, bytes body):
        """Replace the whole response (the backend's body, if any, is dropped): ``headers``
        (name, value) pairs without framing; Content-Length is set from ``body``."""
        self.status = status
        self.reason = b""
        self.lines = [[n, v] for n, v in headers
                      if n.lower() not in (b"content-length", b"transfer-encoding")]
        self.lines.append([b"Content-Length", b"%d" % len(body)])
        self.body = body
        self.replaced = True

    cpdef bytes serialize(self):
        """The head, blank line included (the body is the caller's)."""
        cdef bytes reason = self.reason
        if not reason:
            text = _REASONS.get(self.status)
            reason = (text.encode("latin-1") if text is not None
                      else b"status code %d" % self.status)
        parts = [b"HTTP/1.0 " if self.version_10 else b"HTTP/1.1 ",
                 b"%03d " % self.status, reason, b"\r\n"]
        for line in self.lines:
            parts += [line[0], b": ", line[1], b"\r\n"]
        parts.append(b"\r\n")
        return b"".join(parts)

    def __repr__(self):
        return "<ResponseHead %d %r>" % (self.status, self.headers)


def run_response_phase(Exchange ex, bytes head, bytes body=None):
    """Run ``ex``'s response phase (innermost first) over ``head``: the ResponseHead after."""
    cdef ResponseHead h = ResponseHead.parse(head, body)
    cdef list responders = ex.responders
    cdef Py_ssize_t i
    for i in range(len(responders) - 1, -1, -1):
        if responders[i](ex, h) is WAIT:
            # this middleware answers later instead (``ex.answer``: the errors middleware's
            # page, fetched through a sub-request): the response so far is dropped, and the
            # middlewares outside it see the answer when it comes
            ex.responders = responders[:i]
            ex.waiting = True
            return h
    return h


def edit_answer(Exchange ex, bytes answer):
    """A complete response pyroute answers itself, through ``ex``'s response phase: the
    bytes to send (Content-Length follows a changed body), or None when a middleware's
    ``on_response`` returned WAIT (it calls ``ex.answer`` later)."""
    cdef Py_ssize_t end = answer.find(b"\r\n\r\n")
    cdef bytes body = answer[end + 4:]
    cdef ResponseHead h = run_response_phase(ex, answer[:end + 4], body)
    if ex.waiting:
        return None                 # a response-phase middleware answers later
    if h.body is not body and not h.replaced:
        h.set(b"Content-Length", b"%d" % len(h.body))
    if ex.sniff is not None and ex.req is not None and ex.req.method != b"HEAD":
        ex.sniff(h, h.body or b"")
    return h.serialize() + (h.body if h.body is not None else b"")


def apply_edits(bytes answer, sets, removes):
    """A response pyroute answers itself (head + body) with fixed response edits applied:
    ``removes`` names dropped, ``sets`` (name, value) replacing any same-named line."""
    cdef Py_ssize_t end = answer.find(b"\r\n\r\n")
    cdef list lines = answer[:end].split(b"\r\n")
    drop = {n.lower() for n in removes} | {n.lower() for n, _ in sets}
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower()
                         not in drop]
    kept += [n + b": " + v for n, v in sets]
    return b"\r\n".join(kept) + answer[end:]
