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
    # HDR bins: the median of 1000 requests at 1..1000 ms lands within 1% of 500 ms
    b = Breaker(b"hist", 10.0, 10.0, 10.0)
    for ms in range(1, 1001):
        b.record(200, ms * 1000.0)
    assert abs(b.latency_at(50.0) - 500_000) <= 5_000
    assert abs(b.latency_at(99.0) - 990_000) <= 9_900


class Hdr:
    """hdrhistogram-go v1.2.0 (oxy v2.2.0's), ported line by line as the reference: New,
    RecordValues (an error beyond the counts), ValueAtPercentile."""

    def __init__(self, lowest, highest, sigfigs):
        import math
        largest_single = 2 * 10 ** sigfigs
        sub_mag = int(math.ceil(math.log2(largest_single)))
        self.half_mag = max(sub_mag, 1) - 1
        self.unit_mag = max(int(math.floor(math.log2(lowest))), 0)
        self.sub_count = 2 ** (self.half_mag + 1)
        self.half = self.sub_count // 2
        self.mask = (self.sub_count - 1) << self.unit_mag
        smallest_untrackable = self.sub_count << self.unit_mag
        buckets = 1
        while smallest_untrackable < highest:
            smallest_untrackable <<= 1
            buckets += 1
        self.bucket_count = buckets
        self.counts = [0] * ((buckets + 1) * self.half)
        self.total = 0

    def _bucket(self, v):
        return (v | self.mask).bit_length() - self.unit_mag - (self.half_mag + 1)

    def record(self, v, n=1):
        b = self._bucket(v)
        sub = v >> (b + self.unit_mag)
        idx = ((b + 1) << self.half_mag) + sub - self.half
        if idx < 0 or idx >= len(self.counts):
            return False                          # "value is too large to be recorded"
        self.counts[idx] += n
        self.total += n
        return True

    def _lowest_equivalent(self, v):
        b = self._bucket(v)
        return (v >> (b + self.unit_mag)) << (b + self.unit_mag)

    def _highest_equivalent(self, v):
        b = self._bucket(v)
        sub = v >> (b + self.unit_mag)
        size = 1 << (self.unit_mag + (b + 1 if sub >= self.sub_count else b))
        return self._lowest_equivalent(v) + size - 1

    def value_at(self, q):
        q = min(q, 100.0)
        want = int((q / 100) * self.total + 0.5)
        count, value, sub, b = 0, 0, -1, 0
        while count < want:
            sub += 1
            if sub >= self.sub_count:
                sub = self.half
                b += 1
            count += self.counts[((b + 1) << self.half_mag) + sub - self.half]
            value = sub << (b + self.unit_mag)
        return self._lowest_equivalent(value) if q == 0.0 else self._highest_equivalent(value)


QUANTILES = [0.0, 0.1, 1.0, 10.0, 25.0, 40.0, 50.0, 66.6, 75.0, 90.0, 95.0, 99.0, 99.9,
             100.0, 150.0]


@pytest.mark.parametrize("seed", range(6))
def test_latency_quantiles_are_oxy_s_hdr_histogram(seed):
    # oxy memmetrics: NewRollingHDRHistogram(1, 3600000000, 2, 10 s, 6) of microseconds;
    # the shared-memory histogram answers exactly what HDR's ValueAtQuantile does
    import random
    rnd = random.Random(seed)
    ref = Hdr(1, 3600000000, 2)
    b = Breaker(b"hdr-%d" % seed, 10.0, 10.0, 10.0)
    for _ in range(2000):
        us = int(10 ** rnd.uniform(0, 9.8))       # 1 us .. ~1.7 h, every bucket
        ref.record(us)
        b.record(200, float(us))
    assert len(ref.counts) == 3328                # (25 + 1) buckets x 128
    for q in QUANTILES:
        assert b.latency_at(q) == ref.value_at(q), q


def test_oxy_histogram_cases():
    # oxy TestHDRHistogram_Merge: 1, 1, 2 -> median 1, max 2
    b = Breaker(b"merge", 10.0, 10.0, 10.0)
    for us in (1, 1, 2):
        b.record(200, float(us))
    assert (b.latency_at(50), b.latency_at(100)) == (1, 2)
    # oxy TestNewRTMetrics_defaults: 1 s, 2 s (a 502), 1 s, 1 s -> LatencyAtQuantile(100)
    # of 2 s (in whole seconds)
    b = Breaker(b"rt", 10.0, 10.0, 10.0)
    for code, s in ((200, 1), (502, 2), (200, 1), (200, 1)):
        b.record(code, s * 1e6)
    assert b.latency_at(100) // 1_000_000 == 2
    assert b.total() == 4 and b.network_errors() == 1
    # exact below 256 us, then 1/128: 300 us reads 301, 51 ms reads 51199 us
    b = Breaker(b"exact", 10.0, 10.0, 10.0)
    b.record(200, 200.0)
    assert b.latency_at(100) == 200
    b = Breaker(b"p300", 10.0, 10.0, 10.0)
    b.record(200, 300.0)
    assert b.latency_at(100) == 301
    b = Breaker(b"p51", 10.0, 10.0, 10.0)
    b.record(200, 51000.0)
    assert b.latency_at(50) == 51199
    # beyond HDR's counts (2^32 us, past the hour): counted, but not in the histogram
    b = Breaker(b"huge", 10.0, 10.0, 10.0)
    b.record(200, float(2 ** 32))
    assert b.total() == 1 and b.latency_at(100) == 0
    b.record(200, float(2 ** 32 - 1))
    assert b.latency_at(100) == 2 ** 32 - 1
