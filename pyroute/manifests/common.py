"""What the resolver's parts share: the reference error and Traefik's small helpers."""

__all__ = ["RefError", "is_namespace_allowed", "is_cross_provider_namespace_allowed",
           "port_set", "join_host_port"]


class RefError(Exception):
    """A reference that cannot be resolved; ``path`` is the field (relative to the caller's)."""

    def __init__(self, message, path=()):
        super().__init__(message)
        self.message = message
        self.path = tuple(path)


def is_namespace_allowed(allow_cross, parent_ns, ns):
    # Traefik isNamespaceAllowed: cross-namespace references only when allowed.
    return allow_cross or parent_ns == ns


def is_cross_provider_namespace_allowed(allow_list, namespace):
    """Traefik isCrossProviderNamespaceAllowed: ``None`` (the option unset) allows every
    namespace to name ``x@provider`` objects, an empty list none."""
    return allow_list is None or namespace in allow_list


def port_set(port):
    """Traefik: an IntOrString port is set when it is a non-zero int or a non-empty string."""
    if port is None:
        return False
    if isinstance(port, int):
        return port != 0
    return port != ""


def join_host_port(host, port):
    # Go net.JoinHostPort: brackets around hosts containing ':' (IPv6)
    if ":" in host:
        return "[%s]:%s" % (host, port)
    return "%s:%s" % (host, port)
