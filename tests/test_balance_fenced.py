"""Fenced servers (terminating endpoints, Traefik v3.7 ``dynamic.Server.Fenced``) in the
compiled load balancers of pyroute.proxy.snapshot, as Traefik's wrr / p2c / hrw keep them
(pkg/server/service/loadbalancer): in the balancer and its status set, never picked for a new
request, reached by a sticky cookie while UP (wrr, p2c), and counted in the balancer's status
that health checks propagate. Traefik's CRD provider allows healthCheck on ExternalName
services only, so these balancers come from a dynamic configuration, compiled as the worker
compiles it."""
from types import SimpleNamespace

import pytest

from pyroute._engine.balance import sticky_value
from pyroute._engine.exchange import Exchange
from pyroute._engine.http1 import RequestParser
from pyroute.proxy.snapshot import Compiler, Pools
from pyroute.proxy.status import CheckedBalancer
from pyroute.static import load_static

A, F = "http://127.0.0.1:9001", "http://127.0.0.2:9001"     # F: the fenced one


def balancer(strategy, sticky=True, hc=True):
    lb = {"servers": [{"url": A}, {"url": F, "fenced": True}], "strategy": strategy,
          "passHostHeader": True}
    if sticky:
        lb["sticky"] = {"cookie": {"name": "s"}}
    if hc:
        lb["healthCheck"] = {"path": "/health"}
    config = SimpleNamespace(dynamic={"http": {"services": {"svc@file": {"loadBalancer": lb}}}},
                             static=load_static(None))
    return Compiler(config, Pools())._load_balancer("svc@file", lb)


def exchange(cookie=None):
    ex = Exchange.__new__(Exchange)
    ex.req = RequestParser().parse(bytearray(
        b"GET / HTTP/1.1\r\nHost: a\r\n" + (b"Cookie: s=%s\r\n" % cookie.encode() if cookie
                                            else b"") + b"\r\n"))
    ex.remote_ip = b"192.0.2.1"
    return ex


def urls(svc, n=40, cookie=None):
    out = set()
    for _ in range(n):
        ex = exchange(cookie)
        server = svc.pick(ex)
        out.add(server.url if server is not None else None)
        if ex.service is not None:
            ex.service.done(ex)
    return out


@pytest.mark.parametrize("strategy", ["wrr", "p2c"])
def test_fenced_server_kept_for_sticky_sessions_under_health_checks(strategy):
    svc = balancer(strategy)
    assert isinstance(svc, CheckedBalancer)
    assert urls(svc) == {A}                                    # never a new session
    assert urls(svc, cookie=sticky_value(F)) == {F}           # an existing one stays
    # a fenced server reported DOWN loses its sticky sessions to the others
    svc.set_status(F, False)
    assert urls(svc, cookie=sticky_value(F)) == {A}
    svc.set_status(F, True)
    assert urls(svc, cookie=sticky_value(F)) == {F}


@pytest.mark.parametrize("strategy,sticky", [("wrr", True), ("p2c", True), ("p2c", False),
                                             ("hrw", False)])
def test_fenced_server_counts_in_the_balancers_status(strategy, sticky):
    # Traefik SetStatus: the balancer is UP while its status set (fenced servers included)
    # is not empty; new requests then find no server (503), yet no parent fails over
    svc = balancer(strategy, sticky)
    changes = []
    svc.register(changes.append)
    svc.set_status(A, False)
    assert changes == [] and svc.any_up
    assert urls(svc) == {None}
    if sticky:
        assert urls(svc, cookie=sticky_value(F)) == {F}
    svc.set_status(F, False)
    assert changes == [False]
    svc.set_status(A, True)
    assert changes == [False, True]
    assert urls(svc) == {A}


def test_hrw_never_picks_a_fenced_server():
    svc = balancer("hrw", sticky=False)
    seen = set()
    for i in range(64):
        ex = exchange()
        ex.remote_ip = b"10.0.0.%d" % i
        seen.add(svc.pick(ex).url)
    assert seen == {A}
