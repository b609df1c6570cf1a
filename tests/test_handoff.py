"""The configuration's trip loader -> master -> worker (pyroute.server.handoff): framed so a
worker loads it a slice at a time, equal after the trip, order of every section kept."""
import pickle

from pyroute.manifests import RuntimeConfig
from pyroute.server import handoff
from pyroute.static import StaticConfig


def big_config(n):
    routers = {"r%05d@kubernetescrd" % i: {"rule": "Host(`h%d.test`)" % i, "service": "s%d" % i,
                                          "entryPoints": ["web"]} for i in range(n)}
    services = {"s%d" % i: {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:%d" % i}]}}
                for i in range(n)}
    return RuntimeConfig(static=StaticConfig(), dynamic={
        "http": {"routers": routers, "services": services, "middlewares": {"m": {"x": 1}}},
        "tcp": {}, "tls": {"options": {"default": {}}}})


def test_a_big_configuration_travels_in_frames_and_comes_back_equal_in_order():
    config = big_config(1050)
    payload = handoff.dumps(config)
    assert payload.startswith(handoff.MAGIC)
    steps = handoff.loads_steps(payload)
    frames = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            back = done.value
            break
        frames += 1
    # the head, then 11 frames of routers and 11 of services (SLICE = 100 entries)
    assert frames == 2 * ((1050 + handoff.SLICE - 1) // handoff.SLICE)
    assert back == config
    assert list(back.dynamic["http"]["routers"]) == list(config.dynamic["http"]["routers"])
    assert list(back.dynamic["http"]) == ["routers", "services", "middlewares"]
    assert handoff.loads(payload) == config


def test_small_configurations_and_plain_pickles_load_at_once():
    small = big_config(3)
    payload = handoff.dumps(small)
    assert len(list(iter(handoff.loads_steps(payload)))) == 0
    assert handoff.loads(payload) == small
    assert handoff.loads(pickle.dumps(small)) == small
