# The rule language's typed contract: compiled matcher programs and the route table.
# Everything here is built once per configuration load (rules.pyx, Python-level code) and
# walked per request by C code that touches Python only to call RE2 for regexp matchers.
cimport cython
from cpython.ref cimport PyObject


cdef enum NodeKind:
    N_LEAF = 0      # a = matcher index
    N_AND = 1       # a, b = child node indices
    N_OR = 2
    N_NOT = 3       # a = child node index


cdef enum MatcherKind:
    M_NEVER = 0           # can never match (e.g. Header(`Host`, ...): Go moves Host out of the header map)
    M_HOST = 1            # v3 Host: exact or wildcard expression (s1, lower-cased)
    M_HOST_ANY = 2        # v3 Host(`*`): every request, even without a host
    M_HOST_V2 = 3         # v2 Host/HostHeader: exact, no wildcard
    M_HOST_REGEXP = 4     # v3 HostRegexp on the canonical host (flags & F_EMPTY_MATCHES: always true)
    M_HOST_RAW_REGEXP = 5 # v2 HostRegexp (mux template) on the raw Host (flags & F_STRIP_PORT)
    M_PATH = 6            # routing path == s1
    M_PATH_PREFIX = 7     # routing path starts with s1
    M_PATH_REGEXP = 8     # regexp on the routing path
    M_METHOD = 9          # method == s1 (upper-cased at load)
    M_HEADER = 10         # some line of header s1 (lower-cased name) has value == s2
    M_HEADER_REGEXP = 11  # some line of header s1 matches the regexp
    M_QUERY = 12          # url.ParseQuery: key s1 has value s2
    M_QUERY_REGEXP = 13   # url.ParseQuery: some value of key s1 matches the regexp
    M_QUERY_V2_EQ = 14    # mux: first occurrence of key s1 (split on & and ;) has value s2
    M_QUERY_V2_ANY = 15   # mux `key=` template: key s1 present, value without a newline
    M_QUERY_V2_REGEXP = 16  # mux template: regexp on "s1=<value of first s1>"
    M_CLIENT_IP = 17      # peer IP in nets[ip_start:ip_start+ip_count]


cdef enum MatcherFlags:
    F_EMPTY_MATCHES = 1   # HostRegexp whose regexp matches "" (Traefik also tries the empty CNAME)
    F_STRIP_PORT = 2      # v2 HostRegexp without ':' in its pattern: drop ":port" from the host


cdef struct Node:
    int kind
    int a
    int b


cdef struct Matcher:
    int kind
    int flags
    const unsigned char* s1    # owned by Rule._keep (bytes); NULL when unused
    Py_ssize_t n1
    const unsigned char* s2
    Py_ssize_t n2
    PyObject* regex            # bound RE2 Match method, owned by Rule._keep; NULL when unused
    int ip_start
    int ip_count


cdef struct IPNet:
    # kind 0: one address, compared as 16 bytes (IPv4 as ::ffff:a.b.c.d, Go's net.IP.Equal)
    # kind 4: IPv4 network (also holds IPv4-mapped IPv6 peers), ip/mask in bytes 0..3
    # kind 6: IPv6 network (never holds IPv4 or IPv4-mapped peers: Go's IPNet.Contains)
    int kind
    unsigned char ip[16]
    unsigned char mask[16]


# Uses bits: what a rule reads from the request, so the server builds only that.
cdef enum Uses:
    U_HOST = 1
    U_PATH = 2
    U_QUERY = 4
    U_HEADERS = 8
    U_CLIENT_IP = 16
    U_METHOD = 32


cdef struct QPair:
    # offsets into Req.qbuf (form-decoded key and value)
    Py_ssize_t k
    Py_ssize_t kn
    Py_ssize_t v
    Py_ssize_t vn


cdef struct Req:
    # What Traefik's matchers see of one request; every pointer borrows from the caller's bytes
    # objects or from buffers this struct owns (freed by req_release).
    const unsigned char* method
    Py_ssize_t method_n
    const unsigned char* raw_host     # req.Host as Go has it: absolute-form authority, else Host header
    Py_ssize_t raw_host_n
    unsigned char* host               # canonical host: port and brackets stripped, trimmed, lower-case
    Py_ssize_t host_n
    unsigned char hostbuf[256]
    unsigned char* hostheap
    PyObject* host_obj                # owned, lazily made for regexps
    PyObject* raw_host_obj            # owned, lazily made for v2 HostRegexp
    const unsigned char* path         # path part of the request target (origin-form)
    Py_ssize_t path_n
    PyObject* path_src                # borrowed: the caller's bytes object when path is all of it
    int rpath_state                   # 0: not derived yet, 1: ready, -1: bad percent-encoding (400)
    const unsigned char* rpath        # routing path (Traefik's withRoutingPath)
    Py_ssize_t rpath_n
    unsigned char* rpath_heap
    PyObject* rpath_obj               # owned, lazily made for regexps
    const unsigned char* query
    Py_ssize_t query_n
    int q_state                       # 0: not parsed yet, 1: parsed
    unsigned char* qbuf
    QPair* qpairs
    Py_ssize_t n_qpairs
    PyObject* headers                 # borrowed list of (name, value) bytes tuples, or NULL
    const unsigned char* ip_text
    Py_ssize_t ip_text_n
    int ip_state                      # 0: not parsed, 1: ok, -1: unparsable
    unsigned char ip[16]


@cython.final
cdef class Rule:
    cdef readonly str rule
    cdef readonly str syntax
    cdef readonly long long priority      # Traefik's default priority for this rule
    cdef readonly list domains            # hosts of positive Host matchers, lower-cased
    cdef Node* nodes
    cdef int n_nodes
    cdef int root
    cdef Matcher* matchers
    cdef int n_matchers
    cdef IPNet* nets
    cdef int n_nets
    cdef int uses
    cdef readonly object host_keys        # frozenset of exact-host bucket keys, or None: any host
    cdef readonly object wildcard_keys    # frozenset of "*.<key>" suffix keys, or None: any host
    cdef list _keep

    cdef int _fill(self, list nodes, list matchers, list nets, int root) except -1
    cdef int eval_node(self, int i, Req* r) except -1
    cdef int eval_matcher(self, Matcher* m, Req* r) except -1


cdef struct Bucket:
    const unsigned char* key      # NULL: empty slot; owned by RouteTable._keys
    Py_ssize_t key_n
    unsigned long long hash
    int* ranks                    # ascending ranks (positions in priority order)
    int n


@cython.final
cdef class RouteTable:
    cdef readonly list names              # as given to the constructor
    cdef readonly list priorities         # effective priority per route (constructor order)
    cdef readonly bint needs_headers
    cdef readonly bint needs_query
    cdef readonly bint needs_client_ip
    cdef list _rules                      # Rule per route, constructor order
    cdef list _keys
    cdef PyObject** by_rank               # borrowed Rule per rank
    cdef int* index_of_rank               # constructor index per rank
    cdef int n
    cdef Bucket* slots                    # exact host (trailing dots stripped) -> ranks
    cdef Py_ssize_t cap                   # power of two
    cdef Bucket* wslots                   # parent domain of a "*.parent" wildcard -> ranks
    cdef Py_ssize_t wcap
    cdef int* catch_all                   # ranks of routes outside every bucket, ascending
    cdef int n_catch_all
    cdef int uses
    cdef list _entries                    # a staged table's (-priority, name, index) rows,
                                          # one sorted list per add(); None once finished
                                          # (and the three below)
    cdef list _catch_idx                  # constructor indices outside every bucket
    cdef dict _bidx                       # exact host -> constructor indices
    cdef dict _wbidx                      # wildcard parent -> constructor indices
    cdef bint _index
    cdef str _default_syntax

    cdef int _walk(self, Req* r, list out) except -2
    cpdef int route(self, bytes method, bytes host, bytes path, bytes query, list headers,
                    bytes remote_ip, bint tls) except -3
