# One request and its response (engine/exchange.pyx): the unit HTTP/1.1 requests and HTTP/2
# streams share. The connection that carries it owns the socket, its buffers and keep-alive;
# the exchange owns what the request is and what happened to it.
cimport cython
from pyroute._engine.http1 cimport Request


@cython.final
@cython.freelist(32)
cdef class Exchange:
    # --- where it came from (set when the head is parsed)
    cdef public object conn               # the connection carrying it (ClientConn for HTTP/1.1)
    cdef public object env                # the worker's Env (loop, pools, subrequest)
    cdef public object loop
    cdef public object ep                 # the entry point runtime
    cdef public Request req
    cdef public bytes remote_ip
    cdef public bint trusted              # peer in the entry point's forwardedHeaders.trustedIPs
    cdef public bint tls
    # --- what the chain made of the request (middlewares read and edit these)
    cdef public bytes path
    cdef public object query              # bytes or None
    cdef public list set_headers          # (name, value) added to the forwarded head, or None
    cdef public list remove_headers       # lower-case names dropped from it, or None
    cdef public list resp_extra           # (name, value) added to the response, or None
    cdef public dict vars                 # middlewares' per-request state (created on use)
    cdef public int grpcweb               # the grpcWeb middleware's mark: 1 grpc-web, 2
                                          # grpc-web-text; converted by an h2/h2c upstream
                                          # stream (engine/h2up.pyx), 0: none
    # --- the chain: router middlewares, then child routers', then the service's
    cdef public object route              # RouteTarget whose chain runs / ran last
    cdef public tuple chain               # request-phase middlewares being run
    cdef public Py_ssize_t pos            # index in ``chain`` of the next one to run
    cdef public list responders           # on_response callables passed, outermost first
    cdef public list completers           # on_complete callables, in the order passed
    cdef public bint waiting              # a middleware returned WAIT and has not resumed
    cdef public bint cancelled            # the client went away (or the exchange was cut)
    cdef public bint done
    cdef public list transforms           # body transforms (feed/finish), innermost first
    cdef public object sniff              # callable(head, first body bytes) run once the
                                          # response phase is over and before the head leaves
                                          # (contentType: Go sniffs the first write), or None
    # --- the upstream side
    cdef public object service            # told ``done(ex)`` when the exchange ends (p2c)
    cdef public object server             # ServerTarget picked
    cdef public int server_index
    cdef public object mirror             # pyroute.proxy.mirror.MirrorRequest, or None
    cdef public object pending            # a service-level chain waiting (resume(ex) -> server)
    cdef public object retry              # the retry middleware's attempt in progress, or None
    cdef public tuple service_start       # the request as it stood when the last service-level
                                          # chain began (pyroute.proxy.snapshot.Chained): where
                                          # a retry in that chain goes back to, or None
    cdef public int attempts              # attempts made (retry; 1 without)
    cdef public object body               # conn.Spool: the request body read whole (buffering,
                                          # retry), sent from here with a Content-Length on
                                          # every attempt; None: relayed from the connection
    cdef public object buffering          # the buffering middleware's response side (holds
                                          # the response whole: max_response, mem_response),
                                          # or None
    # --- what observation reads when it completes
    cdef public int status                # status sent to the client; 499: client went away
    cdef public int origin_status         # the backend's status (0: none)
    cdef public double started            # monotonic time the head was read
    cdef public long long bytes_out       # response bytes sent (body included)
    cdef public double ended              # monotonic time it ended (set when observed)
    cdef public double origin_started     # monotonic time the request went to the backend
                                          # (0: pyroute answered itself)
    cdef public long long bytes_in        # request body bytes read from the client (set
                                          # when observed)
    cdef public bytes origin_head         # the backend's response head as received, or None
    cdef public bytes resp_head           # the response head sent to the client (a local
                                          # answer: the whole answer), or None

    cdef void complete(self) except *


@cython.final
cdef class ResponseHead:
    # A response head a middleware's response phase may edit (only on routes that have one:
    # the others relay the backend's head through the Forwarder, untouched by Python).
    cdef public int status
    cdef public bytes reason
    cdef public list lines                # [name, value] pairs (bytes), in order
    cdef public bytes body                # a response pyroute answers itself; None: the backend's
    cdef public bint replaced             # replace() was called: the backend's body is dropped
    cdef public bint version_10           # HTTP/1.0 status line
    cpdef bytes serialize(self)
