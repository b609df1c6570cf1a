"""Health-check status inside a worker's compiled services (Traefik's StatusSetter/StatusUpdater).

Only services whose configuration asks for health checks are built from these classes; every
other service keeps its plain class (pyroute.proxy.snapshot), so nothing on their per-request
path changes.

- ``CheckedBalancer``: a load balancer with ``healthCheck`` (its servers are probed; the master
  reports each server's status, see pyroute.server.health) or a weighted / highestRandomWeight
  service with ``healthCheck: {}`` (its children report theirs). A down child leaves the
  rotation (the others keep their weights' proportions); none up -> no server (503). As
  Traefik's wrr/p2c/hrw: ``set_status`` marks a child, and when the balancer as a whole goes
  from UP to DOWN or back it calls the updaters its parents registered (``register``), which
  only services that enable health checks accept.
- ``CheckedFailover``: Traefik's failover: the main service while its status is UP, else the
  fallback while its status is UP, else 503. Its own ``healthCheck: {}`` makes it report
  main-or-fallback UP to its parents.

A mirroring service never reports status: Traefik's CRD cannot set a mirroring's own
``healthCheck`` (the ``healthCheck`` key of a mirroring TraefikService is its main Service's
check), so a parent with ``healthCheck: {}`` refuses a mirroring child, as Traefik does.
"""
__all__ = ["CheckedBalancer", "CheckedFailover", "register_child"]


def register_child(child, child_name, parent_name, fn):
    """``child.register(fn)`` with Traefik's errors for a child that cannot report status."""
    register = getattr(child, "register", None)
    if register is None:
        raise ValueError("child service %s of %s not a healthcheck.StatusUpdater: "
                         "healthCheck not enabled in config for it" % (child_name, parent_name))
    try:
        register(fn)
    except ValueError as e:
        raise ValueError("cannot register %s as updater for %s: %s"
                         % (child_name, parent_name, e)) from None


class CheckedBalancer:
    """A balancer (WRR, p2c or hrw) whose children can be marked down.

    ``children``: Servers (``servers`` true: a load balancer) or child services; ``names``:
    Traefik's child names (a server's URL, a child service's name), used by ``set_status``.
    """
    __slots__ = ("name", "kind", "children", "names", "servers", "wrr", "p2c", "hrw",
                 "sticky", "set_cookies", "wants", "updaters", "up", "any_up", "by_name",
                 "fenced", "engine_up")

    def __init__(self, name, kind, children, names, servers, wrr=None, p2c=None, hrw=None,
                 sticky=None, set_cookies=None, wants=True, fenced=()):
        self.name = name
        self.kind = kind                  # for messages: "load-balancer", "weighted", ...
        self.children = children
        self.names = names
        self.servers = servers
        self.wrr = wrr
        self.p2c = p2c
        self.hrw = hrw
        self.sticky = sticky
        self.set_cookies = set_cookies
        self.wants = wants                # parents may register (this service's healthCheck)
        self.updaters = []
        self.up = [True] * len(children)  # Traefik: servers/children are UP until told
        self.any_up = bool(children)
        self.by_name = {}
        for i, n in enumerate(names):
            self.by_name.setdefault(n, []).append(i)
        # fenced servers (terminating endpoints; Traefik v3.7 wrr/p2c/hrw ``fenced``): never
        # picked (down in the engine for good), yet probed: their status counts for the
        # balancer's (Traefik's status set holds them) and lets a sticky cookie reach them
        self.fenced = frozenset(fenced)
        engine = wrr or p2c or hrw
        self.engine_up = self.any_up      # whether the engine has a pickable child up
        for i in self.fenced:
            self.engine_up = engine.set_up(i, False)

    # ---- Traefik's StatusUpdater / StatusSetter ------------------------------------------

    def register(self, fn):
        if not self.wants:
            raise ValueError("healthCheck not enabled in config for this %s service"
                             % self.kind)
        self.updaters.append(fn)

    def set_status(self, child, up):
        """Mark every child named ``child`` up or down; propagate a change of the whole."""
        idx = self.by_name.get(child)
        if not idx:
            return
        engine = self.wrr or self.p2c or self.hrw
        for i in idx:
            self.up[i] = up
            if i not in self.fenced:
                self.engine_up = engine.set_up(i, up)
        any_up = self.engine_up
        if self.fenced and not any_up:
            any_up = any(self.up[i] for i in self.fenced)
        if any_up != self.any_up:
            self.any_up = any_up
            for fn in self.updaters:
                fn(any_up)

    # ---- per request -------------------------------------------------------------------

    def pick(self, conn):
        i = -1
        if self.sticky is not None:
            cookie = conn.req.header(b"cookie")
            if cookie:
                i, rewrite = self.sticky.find(cookie)
                if i >= 0 and not self.up[i]:
                    i = -1        # Traefik: a sticky child that is down -> pick another one
                elif i >= 0 and rewrite:
                    conn.resp_extra = (conn.resp_extra or []) + [self.set_cookies[i]]
        if i < 0:
            if self.hrw is not None:
                i = self.hrw.next_up(conn.remote_ip)
            elif self.p2c is not None:
                i = self.p2c.next_up()
                if i >= 0:
                    conn.service = self
            else:
                i = self.wrr.next_up()
            if i < 0:
                return None
            if self.sticky is not None:
                conn.resp_extra = (conn.resp_extra or []) + [self.set_cookies[i]]
        elif self.p2c is not None:
            conn.service = self
        if self.servers:
            conn.server_index = i
            return self.children[i]
        return self.children[i].pick(conn)

    def done(self, conn):
        if self.p2c is not None:
            self.p2c.done(conn.server_index)


class CheckedFailover:
    """Traefik's failover.Failover: main while UP, else fallback while UP, else 503."""
    __slots__ = ("name", "main", "fallback", "main_up", "fallback_up", "wants", "updaters")

    def __init__(self, name, main, fallback, wants):
        self.name = name
        self.main = main
        self.fallback = fallback
        self.main_up = True               # SetHandler / SetFallbackHandler: UP at start
        self.fallback_up = True
        self.wants = wants
        self.updaters = []

    def register(self, fn):
        if not self.wants:
            raise ValueError("healthCheck not enabled in config for this failover service")
        self.updaters.append(fn)

    def set_main(self, up):
        if up != self.main_up:
            self.main_up = up
            self._propagate()

    def set_fallback(self, up):
        if up != self.fallback_up:
            self.fallback_up = up
            self._propagate()

    def _propagate(self):
        # Traefik calls its updaters on every change of either side, with main || fallback
        for fn in self.updaters:
            fn(self.main_up or self.fallback_up)

    def pick(self, conn):
        if self.main_up:
            return self.main.pick(conn)
        if self.fallback_up:
            return self.fallback.pick(conn)
        return None

