"""What the master's internal server answers: Traefik's ``ping@internal`` and
``prometheus@internal`` beside the API (pyroute.api).

One way in: the private unix sockets the workers forward ``api@internal``,
``dashboard@internal``, ``ping@internal`` and ``prometheus@internal`` to, one socket per
service (ping's and prometheus' handlers answer whatever the path, as Traefik's do). Every
entry point is the workers', ``traefik`` included (the one ping, prometheus or api.insecure
create on ``:8080``): the master listens on none, so a scrape through any worker shows the
instance's totals (the master's Store).
"""
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]
_STATUS_TEXT = {200: "OK", 503: "Service Unavailable"}


def _not_found():
    return 404, [("Content-Type", "text/plain; charset=utf-8"),
                 ("X-Content-Type-Options", "nosniff")], b"404 page not found\n"


class Endpoints:
    def __init__(self, static, api=None, store=None):
        self.api = api                      # pyroute.api.Api, or None
        self.store = store                  # pyroute.observability.metrics.Store, or None
        self.ping = getattr(static, "ping", None)
        self.terminating = False            # set by the master when it starts draining

    def handle(self, method, target, body=b"", internal=False, headers=None):
        accept = (headers.get("Accept") if headers is not None else None) or ""
        if internal:
            # ``internal``: which unix socket it came in on, i.e. the service the worker
            # routed it to (a header the client sent decides nothing here)
            if internal == "ping" and self.ping is not None:
                return self.answer_ping(method)
            if internal == "prometheus" and self.store is not None:
                return self.answer_metrics(accept)
            if internal in ("api", True) and self.api is not None:
                return self.api.handle(method, target, body, internal=True)
            if internal == "dashboard" and self.api is not None and \
                    self.api.settings.dashboard:
                return self.api.dashboard_asset(method, target)
        return _not_found()

    def answer_ping(self, method):
        # pkg/ping Handler.ServeHTTP: 200, or terminatingStatusCode once Traefik is stopping;
        # the status text as the body
        code = self.ping.terminating_status_code if self.terminating else 200
        if code == 204 or code == 304 or code < 200:
            return code, [], b""          # Go's ResponseWriter drops the body of these
        return code, list(_TEXT), _status_text(code).encode()

    def answer_metrics(self, accept):
        content_type, data = self.store.render(accept)
        return 200, [("Content-Type", content_type)], data


def _status_text(code):
    text = _STATUS_TEXT.get(code)
    if text is None:
        from http import HTTPStatus
        try:
            text = HTTPStatus(code).phrase
        except ValueError:
            text = ""
    return text
