"""Exceptions raised by the engine; ``pyroute.errors`` re-exports them into its hierarchy."""


class EngineError(Exception):
    """Base of every exception the engine raises."""


class RuleSyntaxError(EngineError, ValueError):
    """A router rule that does not parse.

    ``rule`` is the rule text, ``pos`` the 0-based byte offset of the problem, ``matcher`` the
    matcher involved (or None). ``str()`` shows the rule with a caret under the spot.
    """

    def __init__(self, message, rule="", pos=0, matcher=None):
        self.message = message
        self.rule = rule
        self.pos = pos
        self.matcher = matcher
        super().__init__(self._render())

    def _render(self):
        where = "at position %d" % self.pos
        if self.matcher:
            where += " in %s()" % self.matcher
        lines = ["%s (%s)" % (self.message, where)]
        if self.rule:
            # Show the line of the rule that holds the error; rules may span lines.
            start = self.rule.rfind("\n", 0, self.pos) + 1
            end = self.rule.find("\n", self.pos)
            line = self.rule[start:] if end < 0 else self.rule[start:end]
            lines.append("  " + line)
            lines.append("  " + " " * (self.pos - start) + "^")
        return "\n".join(lines)


class HttpParseError(EngineError):
    """A message the HTTP/1.1 codec refuses; ``status`` is the answer a server should give."""

    def __init__(self, status, reason):
        self.status = status
        self.reason = reason
        super().__init__("%d %s" % (status, reason))
