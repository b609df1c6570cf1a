"""Strict, incremental HTTP/1.1 codec (RFC 9112 / RFC 9110). Typed stub of engine/http1.pyx.

Every refusal raises ``pyroute._engine.errors.HttpParseError`` with ``status`` (the answer a
server gives: 400, 414, 417, 431, 501, 505 for requests; 502 for everything a backend sends) and
``reason`` (short text). A connection that produced one must not be reused.
"""
from typing import List, Optional, Sequence, Tuple, Union

Buffer = Union[bytearray, bytes]

# Framing: how the body after a head is delimited (RFC 9112 §6).
NONE: int      # no body
LENGTH: int    # exactly content_length bytes
CHUNKED: int   # chunked transfer coding: use ChunkedDecoder
CLOSE: int     # responses only: body until the backend closes (keep_alive is False)
TUNNEL: int    # responses only: 101 Switching Protocols, relay bytes both ways

METHOD_OTHER: int            # Request.method_id values
METHOD_GET: int
METHOD_HEAD: int
METHOD_POST: int
METHOD_PUT: int
METHOD_DELETE: int
METHOD_CONNECT: int
METHOD_OPTIONS: int
METHOD_TRACE: int
METHOD_PATCH: int

DEFAULT_MAX_LINE: int        # 8192: request line -> 414 beyond
DEFAULT_MAX_HEAD: int        # 32768: whole head -> 431 beyond
DEFAULT_MAX_FIELDS: int      # 100 header lines -> 431 beyond
DEFAULT_MAX_CHUNK_LINE: int  # 4096: chunk-size line (with extensions) -> 400 beyond
DEFAULT_MAX_TRAILER: int     # 8192: trailer section -> 431 beyond


class Request:
    """A parsed request head. ``raw`` owns a copy of the head; all other values slice it."""

    raw: bytes                  # the head as received (request line .. empty line)
    method_id: int              # 0 other, 1 GET, 2 HEAD, 3 POST, 4 PUT, 5 DELETE, 6 CONNECT,
                                # 7 OPTIONS, 8 TRACE, 9 PATCH
    version: int                # 10 (HTTP/1.0) or 11 (HTTP/1.1)
    keep_alive: bool            # RFC 9112 §9.3: 1.1 unless "close"; 1.0 only with "keep-alive"
    framing: int                # NONE, LENGTH or CHUNKED
    content_length: int         # -1 when absent
    expect_100_continue: bool   # "Expect: 100-continue" (HTTP/1.1); other expectations -> 417
    absolute_form: bool         # absolute-form (or CONNECT authority-form) target: host from it
    te_trailers: bool           # "TE: trailers" was sent
    head_length: int            # bytes from parse()'s start to the first body byte

    @property
    def method(self) -> bytes: ...
    @property
    def target(self) -> bytes: ...          # raw request-target
    @property
    def path(self) -> Optional[bytes]: ...  # raw, before '?'; b"/" for "http://h"; b"*" for
                                            # OPTIONS *; None for CONNECT
    @property
    def query(self) -> Optional[bytes]: ... # raw, after '?'; None when there is no '?'
    @property
    def host(self) -> bytes: ...            # absolute-form authority, else Host's value (port
                                            # included, case kept); b"" when absent (HTTP/1.0)
    @property
    def upgrade(self) -> Optional[bytes]: ...   # Upgrade's value, only with Connection: upgrade
    @property
    def headers(self) -> List[Tuple[bytes, bytes]]: ...  # as received, OWS trimmed, in order
    @property
    def connection_options(self) -> List[bytes]: ...     # Connection tokens naming headers
    def header(self, name: bytes) -> Optional[bytes]: ...  # first value, name in any case


class RequestParser:
    """Finds request heads in a connection's receive buffer, incrementally.

    ``parse(buf, start)``: ``buf`` is the receive buffer (the server appends to it), ``start``
    the offset where the current request begins. Returns None while the head is incomplete (call
    again with the same ``start`` after more bytes arrived; bytes already searched are not
    searched again), the Request once complete: its body begins at ``start + head_length``, and
    the next pipelined request (after the body) is parsed by calling again with its offset.
    Empty lines before a request line are skipped (RFC 9112 §2.2). If the server moves bytes
    inside the buffer while a head is incomplete (e.g. ``del buf[:start]``), call ``reset()`` or
    pass the new ``start`` (a different start restarts the search).
    """

    def __init__(self, max_line: int = ..., max_head: int = ..., max_fields: int = ...) -> None: ...
    def parse(self, buf: Buffer, start: int = 0) -> Optional[Request]: ...
    def reset(self) -> None: ...


class Response:
    raw: bytes
    status: int
    version: int                # 10 or 11
    keep_alive: bool            # False for CLOSE framing, 101, "Connection: close", 1.0 default
    framing: int                # NONE, LENGTH, CHUNKED, CLOSE or TUNNEL (101)
    content_length: int         # -1 when absent (also set for HEAD/304 answers: metadata only)
    head_length: int

    @property
    def reason(self) -> bytes: ...
    @property
    def interim(self) -> bool: ...          # 1xx other than 101: parse the next head after it
    @property
    def upgrade(self) -> Optional[bytes]: ... # Upgrade's value on a 101 (the server must still
                                              # check that the request asked for an upgrade)
    @property
    def headers(self) -> List[Tuple[bytes, bytes]]: ...
    @property
    def connection_options(self) -> List[bytes]: ...
    def header(self, name: bytes) -> Optional[bytes]: ...


class ResponseParser:
    """Finds response heads in an upstream connection's buffer (same contract as RequestParser).

    ``head_request=True`` when the request was HEAD: RFC 9112 §6.3 then gives no body whatever
    the framing headers say. Every refusal is ``HttpParseError(502, ...)``; never reuse that
    upstream connection.
    """

    def __init__(self, max_line: int = ..., max_head: int = ..., max_fields: int = ...) -> None: ...
    def parse(self, buf: Buffer, start: int = 0, head_request: bool = False) -> Optional[Response]: ...
    def reset(self) -> None: ...


class ChunkedDecoder:
    """Streaming chunked decoder (RFC 9112 §7.1) over slices of a buffer; never copies payload.

    ``feed(buf, pos, end=-1)`` validates buf[pos:end] (end=-1: len(buf)) as far as it goes, and
    returns the offset up to which it consumed; it stops after at most one payload range, which
    is ``buf[data_start:data_stop]`` (empty when equal). Bytes [pos, returned) are validated
    chunked framing + payload, so a server may forward them verbatim, or forward only the
    payload ranges re-encoded with ``chunk_header``. ``done`` becomes True once the last chunk
    and the trailer section are read; the returned offset is then the end of the message.
    Refusals: HttpParseError 400 (bad size, extension, terminator, bare CR/LF, trailer syntax),
    431 (trailer section over max_trailer). Call ``feed`` again while it returns < end and not
    ``done``; when it returns ``end`` without ``done``, wait for more bytes.
    """

    data_start: int
    data_stop: int
    total: int                  # payload bytes so far
    done: bool

    def __init__(self, max_line: int = ..., max_trailer: int = ...) -> None: ...
    def feed(self, buf: Buffer, pos: int, end: int = -1) -> int: ...
    def reset(self) -> None: ...


def chunk_header(size: int) -> bytes: ...     # b"%x\r\n" (size > 0); payload, then CHUNK_END
CHUNK_END: bytes                              # b"\r\n" after each chunk's payload
LAST_CHUNK: bytes                             # b"0\r\n\r\n": last chunk, no trailers


class BodyLength:
    """Content-Length counting: ``take(available)`` -> how many of the available bytes belong
    to the body; ``remaining`` left; ``done`` when all were taken."""

    remaining: int
    done: bool

    def __init__(self, length: int) -> None: ...
    def take(self, available: int) -> int: ...


class Forwarder:
    """Builds the heads pyroute forwards: one per entry point and middleware chain, built at
    config load (the header lists are compiled once); per request one call returns the whole
    head as CRLF bytes, re-serialised from the parsed form (never the raw block).

    Request heads (``request_head``): request line ``METHOD target HTTP/1.1`` with the path
    replaced when ``path`` is given (query kept); ``Host`` = ``host`` when given
    (passHostHeader: false), else the request's host; hop-by-hop headers removed (Connection,
    Keep-Alive, Proxy-Connection, TE (except "TE: trailers"), Trailer, Transfer-Encoding,
    Upgrade, Proxy-Authorization, Proxy-Authenticate, and every header Connection names except
    Traefik's managed X-headers, CVE-2024-45410); for an untrusted peer all of Traefik's
    managed X-headers (X-Forwarded-*, X-Real-Ip, X-Scheme, also with '_') are dropped first;
    then as Traefik: X-Real-Ip (if absent) = peer, X-Forwarded-Proto (if absent) =
    http/https/ws/wss, X-Forwarded-Port (if absent) = Host's port or 443/80, X-Forwarded-Host
    (if absent) = host, X-Forwarded-Server = server_name, X-Forwarded-For = prior values
    joined with ", " + peer; then ``request_remove`` / ``request_set`` (Traefik's headers
    middleware customRequestHeaders: set replaces, remove deletes); then framing:
    ``Content-Length: n`` for LENGTH, ``Transfer-Encoding: chunked`` for CHUNKED (the body is
    forwarded as chunked); ``Connection: Upgrade`` + ``Upgrade`` when the client upgrades.

    ``server_name`` (X-Forwarded-Server) defaults to the machine's hostname, as Traefik's
    os.Hostname(); ``tls`` is whether the entry point terminates TLS; ``forwarded=False`` leaves
    X-Forwarded-*/X-Real-Ip alone (hop-by-hop removal still applies). ``peer_ip`` is the client
    address without port (b"" when unknown: then no X-Real-Ip and nothing appended to
    X-Forwarded-For); ``trusted`` is the result of the entry point's forwardedHeaders.trustedIPs
    (or insecure) check for that peer. A header that ``request_set``/``request_remove`` names
    replaces Traefik's computed X-Forwarded-* value of that name (Traefik runs forwardedheaders
    before the headers middleware), except X-Forwarded-For, to which the peer is still appended
    as Go's ReverseProxy does (set: "value, peer"; removed: "peer"). Expect is not forwarded (the
    server answers 100-continue itself). ``request_host``: the Host a headers middleware sets
    (customRequestHeaders ``Host``), sent instead of the request's (``host`` still wins:
    passHostHeader false); ``omit_forwarded_for``: no X-Forwarded-For line at all (Traefik's
    ``X-Forwarded-For: ""``, which sets the header to nil for Go's ReverseProxy).

    ``extra``: per-call (name, value) pairs appended after the configured ones (e.g. a sticky
    session Set-Cookie); checked per call (ValueError on a bad name or a CR/LF/NUL in a value).

    Response heads (``response_head``): ``HTTP/1.1 status reason``; hop-by-hop headers removed
    as above (Upgrade kept on a 101); ``response_remove`` / ``response_set``; framing:
    ``chunked=None`` mirrors the response (Content-Length kept, chunked stays chunked),
    ``True`` writes ``Transfer-Encoding: chunked`` (server re-chunks a CLOSE body), ``False``
    writes no framing header for a chunked/close body (HTTP/1.0 client, body until close);
    ``keep_alive=False`` adds ``Connection: close``; ``keep_alive_10=True`` adds
    ``Connection: keep-alive`` (HTTP/1.0 client that asked for it).
    """

    def __init__(self, *, server_name: Optional[bytes] = None, tls: bool = False, forwarded: bool = True,
                 request_set: Sequence[Tuple[bytes, bytes]] = (),
                 request_remove: Sequence[bytes] = (),
                 response_set: Sequence[Tuple[bytes, bytes]] = (),
                 response_remove: Sequence[bytes] = (),
                 request_host: Optional[bytes] = None,
                 omit_forwarded_for: bool = False) -> None: ...
    request_host: Optional[bytes]
    def request_head(self, req: Request, peer_ip: bytes, trusted: bool = False,
                     host: Optional[bytes] = None, path: Optional[bytes] = None,
                     extra: Optional[Sequence[Tuple[bytes, bytes]]] = None) -> bytes: ...
    def response_head(self, resp: Response, keep_alive: bool = True,
                      chunked: Optional[bool] = None, keep_alive_10: bool = False,
                      extra: Optional[Sequence[Tuple[bytes, bytes]]] = None) -> bytes: ...
