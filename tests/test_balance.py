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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=6), st.booleans()),
                min_size=1, max_size=8))
def test_wrr_health_down_children_skipped_healthy_keep_their_weights(children):
    # Traefik's nextServer with health checks: a down child is popped (its deadline moves
    # on) but not returned, so the healthy ones keep exactly their weights' proportions
    weights = [w for w, _ in children]
    wrr = WRR(weights)
    any_up = False
    for i, (w, up) in enumerate(children):
        any_up = wrr.set_up(i, up)
    healthy = {i: w for i, (w, up) in enumerate(children) if up and w > 0}
    assert any_up == bool(healthy)
    if not healthy:
        assert wrr.next_up() == -1
        return
    n = sum(healthy.values())
    assert Counter(wrr.next_up() for _ in range(3 * n)) == Counter(
        {i: 3 * w for i, w in healthy.items()})
    for i in range(len(children)):      # all back up: plain blocks again (after a resync)
        wrr.set_up(i, True)
    assert set(wrr.next_up() for _ in range(4 * sum(weights))) == \
        {i for i, w in enumerate(weights) if w > 0}


def test_p2c_and_hrw_health_pick_only_healthy_children():
    from pyroute._engine.balance import HRW
    p2c = P2C(4, seed=7)
    assert p2c.set_up(1, False) and p2c.set_up(3, False)
    assert {p2c.next_up() for _ in range(200)} == {0, 2}
    p2c.set_up(0, False)
    assert not p2c.set_up(2, False) and p2c.next_up() == -1
    hrw = HRW(["a", "b", "c"], [1, 1, 1])
    first = hrw.next(b"10.0.0.9")
    assert hrw.next_up(b"10.0.0.9") == first
    hrw.set_up(first, False)
    second = hrw.next_up(b"10.0.0.9")
    assert second not in (first, -1)
    # the remaining children keep their order for this client: the next best one
    for i in range(3):
        if i not in (first, second):
            hrw.set_up(i, False)
    assert hrw.next_up(b"10.0.0.9") == second
    hrw.set_up(second, False)
    assert hrw.next_up(b"10.0.0.9") == -1 and hrw.next(b"10.0.0.9") == first
