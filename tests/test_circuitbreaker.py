"""circuitBreaker's expression and statistics (pyroute/middlewares/circuitbreaker.py over the
shared-memory Breaker of engine/limits.pyx): oxy's Test_parseExpression_tripped cases, with
the statistics recorded into a real Breaker, and the parse errors."""
import itertools

import pytest

from pyroute._engine.limits import Breaker
from pyroute.middlewares.circuitbreaker import ExpressionError, compile_expression

_names = itertools.count()


def breaker(records):
    b = Breaker(b"test-%d" % next(_names), 10.0, 10.0, 10.0)   # checks far apart: no trip
    for code, latency_ms, n in records:
        for _ in range(n):
            b.record(code, latency_ms * 1000.0)
    return b


def net_errors(ratio):
    # oxy statsNetErrors: 100 requests, ratio of them 502 (network errors)
    bad = int(ratio * 100)
    return [(502, 1, bad), (200, 1, 100 - bad)]


def latency(ms):
    # oxy statsLatencyAtQuantile(50, 51ms): requests at that latency
    return [(200, ms, 100)]


@pytest.mark.parametrize("expression,records,expected", [
    ("NetworkErrorRatio() > 0.5", net_errors(0.6), True),
    ("NetworkErrorRatio() < 0.5", net_errors(0.6), False),
    ("LatencyAtQuantileMS(50.0) > 50", latency(51), True),
    ("LatencyAtQuantileMS(50.0) < 50", latency(51), False),
    ("ResponseCodeRatio(500, 600, 0, 600) > 0.5", [(200, 1, 5), (500, 1, 6)], True),
    ("ResponseCodeRatio(500, 600, 0, 600) > 0.5", [(200, 1, 5), (500, 1, 4)], False),
    # quantile not defined (no latency recorded beyond the net errors' 1 ms)
    ("LatencyAtQuantileMS(40.0) > 50", net_errors(0.6), False),
    ("RequestThreshold() >= 20", [(200, 1, 19)], False),
    ("RequestThreshold() >= 20", [(200, 1, 20)], True),
    ("NetworkErrorRatio() > 0.5 && RequestThreshold() > 200", net_errors(0.6), False),
    ("NetworkErrorRatio() > 0.9 || (ResponseCodeRatio(200, 300, 0, 600) == 0.4)",
     net_errors(0.6), True),
    ("ResponseCodeRatio(500, 600, 0, 600) != 0.0", [(200, 1, 3)], False),
])
def test_expression_tripped(expression, records, expected):
    assert compile_expression(expression)(breaker(records)) is expected


@pytest.mark.parametrize("expression,message", [
    ("", "expected operand"),
    ("NetworkErrorRatio() > 1", "expected float64, got int"),
    ("RequestThreshold() > 1.5", "expected int, got float64"),
    ("LatencyAtQuantileMS(50) > 1", "expected float64, got int"),
    ("ResponseCodeRatio(500, 600, 0) > 0.5", "takes 4 argument(s), got 3"),
    ("Bogus() > 1", "unsupported function Bogus"),
    ("NetworkErrorRatio() > 0.5 &&", "expected name"),
    ("(NetworkErrorRatio() > 0.5", "expected )"),
    ("NetworkErrorRatio() ! 0.5", "unexpected character"),
])
def test_bad_expressions(expression, message):
    with pytest.raises(ExpressionError) as e:
        compile_expression(expression)
    assert message in str(e.value) and "^" in str(e.value)


def test_latency_histogram_precision():
    # HDR-like bins: the median of 1000 requests at 1..1000 ms lands within 2% of 500 ms
    b = Breaker(b"hist", 10.0, 10.0, 10.0)
    for ms in range(1, 1001):
        b.record(200, ms * 1000.0)
    assert abs(b.latency_at(50.0) - 500_000) <= 10_000
    assert abs(b.latency_at(99.0) - 990_000) <= 20_000
