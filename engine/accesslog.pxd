# The access log's line builder (engine/accesslog.pyx): one finished exchange -> one line of
# Traefik's JSON / CLF / genericCLF appended to a byte buffer the writer thread takes whole.
cimport cython
from pyroute._engine.exchange cimport Exchange
from pyroute._engine.http1 cimport Request


cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


@cython.final
cdef class Formatter:
    # --- the plan, fixed at config load (pyroute.static.AccessLog)
    cdef int fmt                          # F_JSON, F_COMMON, F_GENERIC
    cdef unsigned long long keep          # bit (1 << K_*) per core field kept
    cdef bint headers_on                  # some header is kept or redacted
    cdef int header_default               # M_KEEP / M_DROP / M_REDACT
    cdef dict header_modes                # canonical name (str) -> mode, from fields.headers
    cdef dict canon                       # header name as received (bytes) -> (key, mode)
    cdef bint filtered
    cdef list ranges                      # ((low, high), ...) filters.statusCodes
    cdef bint retry_filter
    cdef long long min_duration_ns
    cdef bint keep_query
    cdef object tls_fields                # callable(ex) -> (version, cipher, subject) or None
    # --- per worker state
    cdef public long long count           # Traefik's RequestCount
    cdef Buf buf                          # lines not yet taken by the writer
    cdef Buf spare                        # the buffer the writer thread writes (write_to),
                                          # swapped with buf: the lines are never copied
    cdef public Py_ssize_t lines          # lines in buf
    cdef public Py_ssize_t limit          # lines buf may hold (bufferingSize, else default)
    cdef public long long dropped         # lines that did not fit, since the last report
    cdef public object wake               # callable() when buf is half full (the writer's
                                          # Event.set), once per take; None: never
    cdef bint woken
    cdef bint busy                        # a line is being appended: take() waits (a Python
                                          # call in the middle may let the writer run)
    # --- the second last formatted (every line of that second shares it)
    cdef long long utc_sec
    cdef long long local_sec
    cdef long long now_sec                # the line's "time" (a second of its own: a long
                                          # request's start is another second)
    cdef long long clf_sec
    cdef long long clf_local_sec
    cdef char utc_text[32]
    cdef char local_text[40]
    cdef char now_text[40]
    cdef char clf_text[40]
    cdef char clf_local_text[40]

    cdef bint _append(self, object ex, double mono, long long real_ns) except -1
    cdef bint _keep_line(self, int status, long long duration, int retries) except -1
    cdef int _json_path(self, Buf *b, Request req, const char *raw) except -1
    cdef int _rfc3339_nano(self, Buf *b, long long ns, bint utc) except -1
    cdef int _second(self, long long sec, bint utc) except -1
    cdef int _local(self, long long sec, long long *cached, char *text) except -1
    cdef const char *_clf_time(self, long long sec, bint utc) except NULL
    cdef int _clf(self, Exchange ex, Request req, Buf *b, unsigned long long keep,
                  long long start_ns, long long duration, object client_host, object user,
                  object route, object server, object service_name, bint http2,
                  dict headers) except -1
    cdef int _clf_path(self, Buf *b, Request req, const char *raw) except -1
    cdef dict _header_fields(self, Exchange ex)
    cdef int _collect(self, list headers, dict fields, str prefix) except -1
    cdef int _json_headers(self, Buf *b, dict headers, str p, bint *first) except -1
