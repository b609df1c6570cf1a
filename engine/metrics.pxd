# The metrics counters of a worker (engine/metrics.pyx): one finished exchange -> one series'
# counts, in C arrays, keyed by an open-addressing table of (entry point, router obs, service,
# code, method, protocol). pyroute/observability/metrics.py's Recorder subclasses Counts and
# keeps the slow labels (TLS, headerLabels) and the mirror / retry-attempt series in Python.
from pyroute._engine.exchange cimport Exchange


cdef struct Slot:
    # a table entry: the key (object pointers compared by identity, the rest as small ints)
    # and the series it counts into; series == -1: empty
    void *ep
    void *obs
    void *service
    int status
    int method                            # index in METHOD_NAMES
    int proto                             # index in PROTO_NAMES
    Py_ssize_t series


cdef class Counts:
    # --- the plan, fixed at config load
    cdef double *bounds                   # the buckets' upper bounds, ascending
    cdef public Py_ssize_t n              # how many
    cdef public bint minmax               # the last two slots: OTLP's min and max
    cdef public bint slow                 # headerLabels: every exchange goes to observe_slow
    # --- the series since the last take()
    cdef Slot *table
    cdef Py_ssize_t cap                   # table size, a power of two
    cdef Py_ssize_t used                  # series in the table
    cdef long long *cnt                   # per series: requests, request bytes, response
                                          # bytes, n bucket counts
    cdef double *flt                      # per series: duration sum, min, max
    cdef Py_ssize_t series_cap
    cdef list keys                        # per series: (ep, obs, service, status, method,
                                          # proto): holds the objects the table points to

    cdef int count(self, Exchange ex) except -1
    cdef Py_ssize_t _slot(self, object ep, object obs, object service, int status,
                          int method, int proto) except -1
    cdef int _grow(self) except -1
    cdef int _grow_series(self) except -1
