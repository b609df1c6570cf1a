# The typed contract of the HTTP/1.1 codec (engine/http1.pyx).
#
# Ownership: a parsed head (Request / Response) copies the head block once into ``raw`` (a bytes
# object it owns); every Span below is an offset pair into ``raw``. The receive buffer the server
# appends to is never referenced after parse() returns, so the server may compact or grow it.
cimport cython
from libc.stdint cimport uint32_t, uint64_t
from pyroute._engine._common cimport Span


cdef enum Framing:
    # how the body that follows a head is delimited (RFC 9112 §6)
    FRAMING_NONE = 0        # no body
    FRAMING_LENGTH = 1      # exactly content_length bytes
    FRAMING_CHUNKED = 2     # chunked transfer coding (ChunkedDecoder)
    FRAMING_CLOSE = 3       # responses only: body runs until the backend closes
    FRAMING_TUNNEL = 4      # responses only: 101 Switching Protocols, bytes flow both ways


cdef enum Method:
    # well-known methods get an id so that hot code never compares method strings
    M_OTHER = 0
    M_GET
    M_HEAD
    M_POST
    M_PUT
    M_DELETE
    M_CONNECT
    M_OPTIONS
    M_TRACE
    M_PATCH


cdef enum HeaderId:
    # recognised in the scanning pass by a name hash (+ one confirming compare), see _KNOWN
    H_OTHER = 0
    H_HOST
    H_CONTENT_LENGTH
    H_TRANSFER_ENCODING
    H_CONNECTION
    H_UPGRADE
    H_EXPECT
    H_TE
    H_KEEP_ALIVE
    H_PROXY_CONNECTION
    H_TRAILER
    H_PROXY_AUTHORIZATION
    H_PROXY_AUTHENTICATE
    # Traefik's managed X-headers (forwardedheaders.XHeadersSet): '_' matches '-' for these
    H_X_FORWARDED_FOR
    H_X_FORWARDED_PROTO
    H_X_FORWARDED_HOST
    H_X_FORWARDED_PORT
    H_X_FORWARDED_SERVER
    H_X_FORWARDED_URI
    H_X_FORWARDED_METHOD
    H_X_FORWARDED_PREFIX
    H_X_FORWARDED_SCHEME
    H_X_FORWARDED_TLS_CLIENT_CERT
    H_X_FORWARDED_TLS_CLIENT_CERT_INFO
    H_X_SCHEME
    H_X_REAL_IP
    H_COUNT


cdef enum:
    INLINE_FIELDS = 24      # fields stored inside the head object; more go to a heap array
    MAX_CONN_TOKENS = 8     # Connection options other than close/keep-alive/upgrade we track


cdef struct Field:
    Span name               # into raw
    Span value              # into raw, OWS trimmed
    int id                  # HeaderId


cdef struct Limits:
    Py_ssize_t max_line     # request line / status line bytes (CRLF excluded)
    Py_ssize_t max_head     # whole head incl. request line and the empty line
    Py_ssize_t max_fields   # header lines


@cython.final
cdef class Request:
    cdef readonly bytes raw             # the head block (request line .. empty line); owns the Spans
    cdef Span _method
    cdef Span _target                   # raw request-target as received
    cdef Span _path                     # origin-form: target up to '?'; absolute-form: its path
    cdef Span _query                    # after '?', start == -1: no '?'
    cdef Span _host                     # authority of an absolute-form target, else Host's value
    cdef Span _upgrade                  # Upgrade's value when Connection has "upgrade", else -1
    cdef Span _conn_tokens[MAX_CONN_TOKENS]   # Connection options naming other headers
    cdef int n_conn_tokens
    cdef readonly int method_id         # Method
    cdef readonly int version           # 10 or 11
    cdef readonly bint keep_alive       # RFC 9112 §9.3: by version and Connection
    cdef readonly int framing           # Framing: NONE, LENGTH or CHUNKED
    cdef readonly long long content_length   # -1: absent
    cdef readonly bint expect_100_continue
    cdef readonly bint absolute_form    # target was absolute-form (Host was replaced)
    cdef readonly bint te_trailers      # "TE: trailers" was sent (kept upstream, as Go does)
    cdef readonly Py_ssize_t head_length     # bytes from the parse start to the body
    cdef uint64_t seen                  # bit (1 << HeaderId) for every recognised header present
    cdef Field *fields                  # inline_fields or a PyMem array
    cdef Py_ssize_t n_fields
    cdef Py_ssize_t cap_fields
    cdef Field inline_fields[INLINE_FIELDS]

    @staticmethod
    cdef Request new()


@cython.final
cdef class Response:
    cdef readonly bytes raw
    cdef Span _reason
    cdef Span _upgrade
    cdef Span _conn_tokens[MAX_CONN_TOKENS]
    cdef int n_conn_tokens
    cdef readonly int status
    cdef readonly int version
    cdef readonly bint keep_alive
    cdef readonly int framing           # Framing
    cdef readonly long long content_length   # -1: absent
    cdef readonly Py_ssize_t head_length
    cdef uint64_t seen
    cdef Field *fields
    cdef Py_ssize_t n_fields
    cdef Py_ssize_t cap_fields
    cdef Field inline_fields[INLINE_FIELDS]

    @staticmethod
    cdef Response new()


# Incremental head finder shared by both parsers: remembers how far it searched for the end of
# the head, so a head that arrives in pieces is scanned once.
cdef struct HeadScan:
    Py_ssize_t start        # offset in the buffer where the message begins (-1: none yet)
    Py_ssize_t pos          # next byte to search
    Py_ssize_t line_start   # start of the line being searched
    Py_ssize_t lines        # complete lines seen (request/status line included)
    Py_ssize_t msg_start    # where the start line begins (after ignored leading empty lines)
    bint have_first_line    # the start line is complete


@cython.final
cdef class RequestParser:
    cdef Limits limits
    cdef HeadScan scan
    cpdef Request parse(self, object buf, Py_ssize_t start=*)


@cython.final
cdef class ResponseParser:
    cdef Limits limits
    cdef HeadScan scan
    cpdef Response parse(self, object buf, Py_ssize_t start=*, bint head_request=*)


