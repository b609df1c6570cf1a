"""engine/balance: Traefik's WRR, p2c and sticky-cookie scheme."""
import hashlib
from collections import Counter

from hypothesis import given, settings, strategies as st

from pyroute._engine.balance import P2C, WRR, Sticky, cookie_name, sticky_value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=8))
def test_wrr_every_block_gives_each_child_exactly_its_weight(weights):
    wrr = WRR(weights)
    total = sum(weights)
    if total == 0:
        assert wrr.next() == -1
        return
    for _ in range(3):
        block = Counter(wrr.next() for _ in range(total))
        assert block == Counter({i: w for i, w in enumerate(weights) if w > 0})


def test_wrr_sequence_matches_traefik_edf_heap():
    # Traefik (container/heap, deadline += 1/weight) yields this order for weights 3,1,0,2;
    # the weight-0 child (index 2) is never picked.
    wrr = WRR([3, 1, 0, 2])
    assert [wrr.next() for _ in range(6)] == [0, 3, 0, 3, 0, 1]


def test_wrr_default_weight_is_one():
    wrr = WRR([None, None])
    assert [wrr.next() for _ in range(4)] == [0, 1, 0, 1]


def test_p2c_prefers_fewer_in_flight():
    p2c = P2C(2, seed=7)
    first = p2c.next()
    # The other child has nothing in flight: it must win now whatever is drawn.
    assert p2c.next() == 1 - first
    p2c.done(first)
    p2c.done(1 - first)
    assert p2c.in_flight(0) == p2c.in_flight(1) == 0


def test_p2c_spreads_over_all_children():
    p2c = P2C(4, seed=1)
    seen = Counter()
    for _ in range(400):
        i = p2c.next()
        seen[i] += 1
        p2c.done(i)
    assert set(seen) == {0, 1, 2, 3}


def test_default_cookie_name_is_traefiks_hash_of_service_name():
    svc = "default-whoami-80@kubernetescrd"
    want = ("_" + hashlib.sha1(("_TRAEFIK_BACKEND_" + svc).encode()).hexdigest())[:6]
    assert cookie_name("", svc) == want
    assert len(want) == 6


def test_configured_cookie_name_is_sanitised():
    assert cookie_name("my cookie/1", "x") == "my_cookie_1"
    assert cookie_name("ok-name.v1", "x") == "ok-name.v1"


def test_sticky_value_is_truncated_sha256_of_server_url():
    url = "http://10.0.0.1:80"
    assert sticky_value(url) == hashlib.sha256(url.encode()).hexdigest()[:16]


def test_sticky_lookup_finds_child_among_other_cookies():
    urls = ["http://10.0.0.1:80", "http://10.0.0.2:80"]
    s = Sticky("_abcde", urls)
    v1 = sticky_value(urls[1]).encode()
    assert s.find(b"a=b; _abcde=" + v1 + b"; c=d") == (1, False)
    assert s.find(b"_abcdef=" + v1) == (-1, False)
    assert s.find(b"_abcde=unknown") == (-1, False)
    assert s.find(b"") == (-1, False)


def test_sticky_accepts_legacy_values_and_asks_for_rewrite():
    urls = ["http://10.0.0.1:80", "http://10.0.0.2:80"]
    s = Sticky("c", urls)
    assert s.find(b"c=http://10.0.0.2:80") == (1, True)
