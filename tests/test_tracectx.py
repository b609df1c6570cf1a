"""The request-phase trace decision in C (engine/tracectx.pyx) against the plain Python one
(pyroute.observability.tracing.parse_traceparent / sample_bound) on random client headers,
through the engine's Exchange and a Request the real parser read. tests/test_e2e_tracing.py
checks the spans and the propagation of real requests against a real OTLP receiver."""
import os
import re
import types

from hypothesis import given, settings, strategies as st

from pyroute._engine.exchange import Exchange
from pyroute._engine.http1 import RequestParser
from pyroute._engine.tracectx import random_id
from pyroute.observability.tracing import TraceStart, parse_traceparent, sample_bound

HEXL = "0123456789abcdef"
TP = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])")


def _hex(n):
    return st.text(alphabet=HEXL, min_size=n, max_size=n)


# traceparent values near the valid ones: each part right or wrong in one way
TRACEPARENT = st.tuples(
    st.sampled_from(["00", "01", "ff", "0g", "0", "AB"]),
    _hex(32) | st.sampled_from(["0" * 32, "A" * 32, "1" * 31]),
    _hex(16) | st.sampled_from(["0" * 16, "x" * 16, "1" * 17]),
    st.sampled_from(["00", "01", "03", "fe", "1", "0G"]),
    st.sampled_from(["", "-", "-extra", "-x-y"]),
    st.sampled_from(["", " ", "\t"]),
).map(lambda t: (t[5] + "-".join(t[:4]) + t[4] + t[5]).encode()) | st.tuples(
    _hex(32), _hex(16), st.sampled_from(["00", "01"])).map(
    lambda t: ("00-%s-%s-%s" % t).encode())                # valid ones, as often


def _exchange(headers):
    raw = b"GET /p HTTP/1.1\r\nHost: h\r\n" + b"".join(
        n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"
    ex = Exchange.__new__(Exchange)
    ex.req = RequestParser().parse(bytearray(raw))
    ex.path = b"/p"
    ex.env = types.SimpleNamespace(now=1.0)     # the worker's Env: its loop time
    return ex


def _step(rate):
    return TraceStart(sample_bound(rate), False, "r@x", "Path(`/`)", "s@x", ())


@settings(max_examples=800, deadline=None)
@given(st.none() | TRACEPARENT, st.none() | st.sampled_from([b"", b"a=b", b"k=v,x=y"]),
       st.sampled_from([0.0, 0.5, 1.0]), st.booleans(), st.booleans())
def test_decision_and_injection_match_the_python_statement(tp, state, rate, preset, upper):
    headers = []
    if tp is not None:
        headers.append((b"TraceParent" if upper else b"traceparent", tp))
    if state is not None:
        headers.append((b"tracestate", state))
    ex = _exchange(headers)
    if preset:
        ex.set_headers = [(b"x-a", b"1")]
        ex.remove_headers = [b"x-b"]
    _step(rate).on_request(ex)
    parent = parse_traceparent(tp)
    name, value = ex.set_headers[1 if preset else 0]
    assert name == b"traceparent"
    m = TP.fullmatch(value)
    assert m, value
    trace_id, sampled = int(m.group(1), 16), m.group(3) == b"01"
    assert int(m.group(2), 16) != 0 and trace_id != 0
    t = (ex.vars or {}).get("trace")
    assert (t is not None) == sampled
    if parent is not None:
        # the client's trace goes on; its flag decides, its tracestate travels with it
        assert (trace_id, sampled) == (parent[0], parent[2])
        assert t is None or (t.parent_id, t.state) == (parent[1], state)
        extra = [(b"tracestate", state)] if state else []
    else:
        # a new trace: TraceIDRatioBased on its low 64 bits
        assert sampled == ((trace_id & ((1 << 64) - 1)) < sample_bound(rate))
        assert t is None or t.parent_id == 0
        extra = []
    assert ex.set_headers == ([(b"x-a", b"1")] if preset else []) + [(name, value)] + extra
    sent = tp is not None or state is not None
    removed = [b"traceparent", b"tracestate"] if sent else []
    assert (ex.remove_headers or []) == ([b"x-b"] if preset else []) + removed
    if t is not None:
        assert t.client_id == int(m.group(2), 16) and t.trace_id == trace_id and t.sampled


def test_ratio_sampling_rate():
    # sampleRate 0.25: about a quarter of new traces sampled
    step = _step(0.25)
    n = 4000
    sampled = 0
    for _ in range(n):
        ex = _exchange([])
        step.on_request(ex)
        sampled += ex.set_headers[0][1].endswith(b"-01")
    assert 0.2 * n < sampled < 0.3 * n


def test_ids_differ_after_fork():
    # each worker draws its own ids: a forked child does not repeat its parent's sequence
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"%032x" % random_id(128))
        os._exit(0)
    os.waitpid(pid, 0)
    child = int(os.read(r, 64), 16)
    mine = random_id(128)
    os.close(r)
    os.close(w)
    assert child != mine and len({random_id(64) for _ in range(1000)}) == 1000
