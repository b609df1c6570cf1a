"""headers: customRequestHeaders / customResponseHeaders (Traefik pkg/middlewares/headers).

A value "" removes the header (Traefik: "an empty value removes it"). The security and CORS
options of the same middleware are another issue: naming one is a config error.
"""

SUPPORTED = {"customRequestHeaders", "customResponseHeaders"}


class Headers:
    __slots__ = ("request", "response")

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
            edits.append((name.encode("latin-1"),
                          value.encode("latin-1") if value != "" else None))
        return edits

    # Static edits: compiled into the route's http1.Forwarder at config load
    # (``compile_edits``), so nothing runs per request.
    static = True

    def compile_edits(self, req_set, req_remove, resp_set, resp_remove):
        for name, value in self.request:
            (req_remove.append(name) if value is None else req_set.append((name, value)))
        for name, value in self.response:
            (resp_remove.append(name) if value is None else resp_set.append((name, value)))
