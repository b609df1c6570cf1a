"""pyroute's exception hierarchy.

Config errors carry where they come from (file, line, object, field path) so that every
message can point at the spot; engine errors (rule syntax, HTTP parse errors) are defined in
the engine, which never imports this package, and re-exported here.
"""
from ._engine.errors import EngineError, HttpParseError, RuleSyntaxError

__all__ = ["PyrouteError", "ConfigError", "EngineError", "RuleSyntaxError", "HttpParseError"]


class PyrouteError(Exception):
    """Base of pyroute's own exceptions outside the engine."""


class ConfigError(PyrouteError):
    """A problem in the user's configuration.

    Rendered as ``file:line: Kind namespace/name: field: message`` (parts that are unknown are
    left out), the format ``pyroute check`` prints.
    """

    def __init__(self, message, *, file=None, line=None, kind=None, namespace=None, name=None,
                 field=None, severity="error"):
        self.message = message
        self.file = file
        self.line = line
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.field = field
        self.severity = severity
        super().__init__(self.render())

    def __reduce__(self):
        # keep the fields (and the subclass) through pickling: errors travel from the loader
        # process to the master and the workers
        return (_rebuild, (type(self), dict(self.__dict__)))

    def render(self):
        parts = []
        if self.file:
            parts.append("%s:%s" % (self.file, self.line) if self.line else str(self.file))
        if self.kind:
            obj = "%s/%s" % (self.namespace, self.name) if self.namespace else (self.name or "")
            parts.append(("%s %s" % (self.kind, obj)).strip())
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


def _rebuild(cls, fields):
    err = cls.__new__(cls)
    err.__dict__.update(fields)
    PyrouteError.__init__(err, err.render())
    return err
