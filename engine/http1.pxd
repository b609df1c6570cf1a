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
    # one of those in its underscore spelling (X_Forwarded_For): a header of its own for Go
    # (CanonicalHeaderKey leaves '_' alone), managed only in that untrusted peers lose it
    H_X_UNDERSCORE
    H_COUNT


cdef enum:
    INLINE_FIELDS = 24      # fields stored inside the head object; more go to a heap array


cdef struct Field:
    Span name               # into raw
    Span value              # into raw, OWS trimmed
    int id                  # HeaderId
    uint32_t hash           # case-folded name hash ('_' folded to '-'), see _hash_step


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
    cdef int n_conn_tokens              # Connection options other than close/keep-alive/upgrade
                                        # (they name hop-by-hop headers; re-read from fields)
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
    # the properties' values for Cython callers (no attribute lookup through the type)
    cdef bytes get_method(self)
    cdef bytes get_host(self)
    cdef bytes get_path(self)
    cdef bytes get_query(self)
    # header lines whose name holds '_'; ``drop``: removed from the head (never re-read raw)
    cdef Py_ssize_t underscore_fields(self, bint drop) noexcept


@cython.final
cdef class Response:
    cdef readonly bytes raw
    cdef Span _reason
    cdef Span _upgrade
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
    cdef void clear(self) noexcept


@cython.final
cdef class ResponseParser:
    cdef Limits limits
    cdef HeadScan scan
    cpdef Response parse(self, object buf, Py_ssize_t start=*, bint head_request=*)
    cdef void clear(self) noexcept


cdef enum ChunkState:
    CS_SIZE = 0             # in a chunk-size line
    CS_DATA                 # in chunk data
    CS_DATA_CR              # expecting CR after data
    CS_DATA_LF              # expecting LF after data
    CS_TRAILER              # in the trailer section
    CS_DONE


@cython.final
cdef class ChunkedDecoder:
    cdef int state                      # ChunkState
    cdef long long remaining            # data bytes left in the current chunk
    cdef Py_ssize_t line_len            # bytes of the current size line / trailer line so far
    cdef Py_ssize_t trailer_len         # bytes of trailer section so far
    cdef Py_ssize_t max_line
    cdef Py_ssize_t max_trailer
    cdef int size_digits
    cdef int line_phase                 # inside a size line: 0 digits, 1 extension, 2 got CR
    cdef int trailer_phase              # inside a trailer line, see _trailer_byte
    cdef readonly Py_ssize_t data_start # payload range found by the last feed(): [data_start,
    cdef readonly Py_ssize_t data_stop  #  data_stop) into the buffer passed; empty when equal
    cdef readonly long long total       # payload bytes decoded so far
    cdef readonly bint done             # the last chunk and the trailer section were read
    cpdef Py_ssize_t feed(self, object buf, Py_ssize_t pos, Py_ssize_t end=*) except -1


@cython.final
cdef class BodyLength:
    cdef readonly long long remaining
    cpdef long long take(self, long long available) noexcept


cdef struct NameMatch:
    # a header name compiled at config load: matched by hash and length, then confirmed
    uint32_t hash
    Py_ssize_t length
    const char *lname       # lowercase, owned by Forwarder._keep
    int id                  # HeaderId of the name (H_OTHER for others)


@cython.final
cdef class Forwarder:
    cdef list _keep                     # owns every byte string the C fields below point to
    cdef bytes server_name
    cdef bint tls
    cdef bint forwarded
    cdef bytes req_set_blob             # "Name: value\r\n"... for request_set, serialised once
    cdef bytes resp_set_blob
    cdef NameMatch *req_drop            # request_set + request_remove names
    cdef Py_ssize_t n_req_drop
    cdef NameMatch *resp_drop
    cdef Py_ssize_t n_resp_drop
    cdef bint xff_reset                 # request_set/remove name X-Forwarded-For: no client values
    cdef bytes xff_prior                # request_set's X-Forwarded-For value (None: not set)
    cdef uint64_t req_override          # HeaderIds request_set/remove take over from Traefik's
    cdef readonly bytes request_host    # Host a headers middleware sets (None: the request's)
    cdef bint xff_omit                  # X-Forwarded-For set to nil: no X-Forwarded-For at all
    cpdef bytes request_head(self, Request req, bytes peer_ip, bint trusted=*, bytes host=*, bytes path=*,
                             object extra=*)
    cpdef bytes response_head(self, Response resp, bint keep_alive=*, object chunked=*, bint keep_alive_10=*,
                              object extra=*)
