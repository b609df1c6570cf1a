"""The boolean expression language of vulcand/oxy's predicates (circuitBreaker's
``expression``, buffering's ``retryExpression``): ``||``, ``&&``, parentheses and function
calls compared with literals. Each middleware names its functions and checks a call
(``call``); parse errors are config errors with a caret under the column."""

COMPARE = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
           "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


class ExpressionError(ValueError):
    pass


def error(text, pos, message):
    return ExpressionError("expression: %s at column %d\n  %s\n  %s^"
                           % (message, pos + 1, text, " " * pos))


def tokens(text, pattern, literal):
    """``text`` as (kind, value, column) tuples ending with ("end", None, len): ``pattern``'s
    named group that matched is the kind ("num", "str", "name", "op"); ``literal(kind, text)``
    is the value of a "num" or "str" token."""
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m or m.end() == pos:
            raise error(text, pos + len(text[pos:]) - len(text[pos:].lstrip()),
                        "unexpected character")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "num" or kind == "str":
            value = literal(kind, value)
        out.append((kind, value, m.start(kind)))
        pos = m.end()
    out.append(("end", None, len(text)))
    return out


class ExpressionParser:
    """Recursive descent over ``toks`` ((kind, value, column) ..., ending with "end");
    a subclass's ``call(name_tok)`` parses what follows a function name."""

    def __init__(self, text, toks):
        self.text = text
        self.toks = toks
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self, kind=None, value=None):
        tok = self.toks[self.i]
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            want = value or kind
            raise error(self.text, tok[2], "expected %s, found %s" % (
                want, "end of expression" if tok[0] == "end" else repr(tok[1])))
        self.i += 1
        return tok

    def parse(self):
        if self.peek()[0] == "end":
            raise error(self.text, 0, "expected operand, found end of expression")
        node = self.or_()
        self.take("end")
        return node

    def or_(self):
        parts = [self.and_()]
        while self.peek()[1] == "||":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_(self):
        parts = [self.term()]
        while self.peek()[1] == "&&":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def term(self):
        if self.peek()[1] == "(":
            self.take()
            node = self.or_()
            self.take("op", ")")
            return node
        return self.call(self.take("name"))     # the subclass's function call
