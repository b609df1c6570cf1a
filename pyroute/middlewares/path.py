"""stripPrefix and addPrefix (Traefik pkg/middlewares/stripprefix, addprefix)."""


def _leading_slash(p):
    return p if p.startswith(b"/") else b"/" + p


class StripPrefix:
    """Removes the first matching prefix and says so in X-Forwarded-Prefix."""
    __slots__ = ("prefixes",)
    static = False

    def __init__(self, spec):
        prefixes = spec.get("prefixes") or []
        if not isinstance(prefixes, list):
            raise ValueError("prefixes: expected a list of strings")
        self.prefixes = [p.encode() for p in prefixes]

    def on_request(self, conn):
        path = conn.path
        for prefix in self.prefixes:
            if path.startswith(prefix):
                conn.path = _leading_slash(path[len(prefix):])
                # Traefik adds the header after forwardedheaders ran, so it always reaches
                # the backend (trimmed prefix, as Traefik writes it)
                edits = conn.set_headers
                if edits is None:
                    conn.set_headers = edits = []
                edits.append((b"X-Forwarded-Prefix", prefix.strip()))
                return None
        return None


class AddPrefix:
    __slots__ = ("prefix",)
    static = False

    def __init__(self, spec):
        prefix = spec.get("prefix", "")
        if not isinstance(prefix, str):
            raise ValueError("prefix: expected a string")
        self.prefix = _leading_slash(prefix.encode()) if prefix else b""

    def on_request(self, conn):
        if self.prefix:
            conn.path = self.prefix + conn.path
        return None
