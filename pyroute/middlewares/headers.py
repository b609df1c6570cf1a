"""headers: customRequestHeaders / customResponseHeaders (Traefik pkg/middlewares/headers).

A value "" removes the header (Traefik: "an empty value removes it"). The security and CORS
options of the same middleware are another issue: naming one is a config error.
"""

SUPPORTED = {"customRequestHeaders", "customResponseHeaders"}


class Headers:
    __slots__ = ("request", "response")
    resp = True

    def __init__(self, spec):
        unknown = sorted(k for k in spec if k not in SUPPORTED and spec[k] not in (None, [], {}))
        if unknown:
            raise ValueError("headers option %s is not supported by pyroute yet"
                             % ", ".join(unknown))
        self.request = self._edits(spec.get("customRequestHeaders") or {})
        self.response = self._edits(spec.get("customResponseHeaders") or {})

    @staticmethod
    def _edits(mapping):
        edits = []
        for name, value in mapping.items():
            if not isinstance(value, str):
                raise ValueError("header %s: expected a string value" % name)
            edits.append((name.lower().encode("latin-1"),
                          value.encode("latin-1") if value != "" else None))
        return edits

    def on_request(self, conn):
        if self.request:
            if conn.set_headers is None:
                conn.set_headers = list(self.request)
            else:
                conn.set_headers.extend(self.request)
        return None

    def on_response(self, conn, resp, extra):
        if self.response:
            extra.extend(self.response)
