"""Service pick benchmarks: a plain load balancer next to a health-checked one (same servers).

Run: .venv/bin/python -m pytest bench/test_balance.py --benchmark-only
The plain path (pyroute.proxy.snapshot.LoadBalancer over WRR.next) is what every service
without health checks runs; status.CheckedBalancer (WRR.next_up, a down child skipped) is
what a service with health checks runs. One group per shape, so the report is side by side.
"""
import pytest

from pyroute._engine.balance import WRR
from pyroute.proxy.snapshot import LoadBalancer
from pyroute.proxy.status import CheckedBalancer


class _Conn:
    __slots__ = ("req", "resp_extra", "service", "server_index", "remote_ip")

    def __init__(self):
        self.req = None
        self.resp_extra = None
        self.service = None
        self.server_index = -1
        self.remote_ip = b"127.0.0.1"


SERVERS = ["s%d" % i for i in range(4)]


def plain():
    return LoadBalancer(SERVERS, [1, 1, 1, 1], "wrr", None, None)


def checked(down=0):
    lb = CheckedBalancer("svc", "load-balancer", SERVERS, SERVERS, True, wrr=WRR([1, 1, 1, 1]))
    for name in SERVERS[:down]:
        lb.set_status(name, False)
    return lb


@pytest.mark.benchmark(group="pick, 4 servers")
@pytest.mark.parametrize("kind", ["plain", "checked-all-up", "checked-1-down"])
def test_pick(benchmark, kind):
    lb = {"plain": plain, "checked-all-up": checked,
          "checked-1-down": lambda: checked(1)}[kind]()
    conn = _Conn()
    picked = benchmark(lb.pick, conn)
    assert picked in SERVERS
