"""circuitBreaker (Traefik pkg/middlewares/circuitbreaker, oxy's cbreaker and memmetrics).

States as oxy's: standby (requests go on; every ``checkPeriod`` the condition is evaluated
over the statistics), tripped (``fallbackDuration``: every request gets the fallback,
``responseCode`` (503) with its status text), recovering (``recoveryDuration``: a share of
requests rising from 0 to 50% goes on — oxy's ratioController —, the rest get the fallback;
then standby). The condition tripping resets the statistics.

Statistics (oxy RTMetrics): requests, network errors (502 and 504 answers) and status codes
over a rolling 10 s window (10 buckets of 1 s), latencies in a rolling histogram (6 periods of
10 s; oxy's HDR layout, 1 us to 1 h with 2 significant figures). They describe the
instance's traffic through the breaker, not one worker's: they live in the memory the
workers share (engine/limits.pyx ``Breaker``), and so does the state.

The expression is vulcand/predicate's language as oxy defines it: ``NetworkErrorRatio()``,
``ResponseCodeRatio(from, to, dividedByFrom, dividedByTo)``, ``LatencyAtQuantileMS(q)``,
``RequestThreshold()``, compared (``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``) with a
literal of the function's type (a float for the ratios, an integer for the others; the
quantile a float, "50.0"), joined with ``&&`` and ``||``, in parentheses.
"""
import re

from .._engine.limits import Breaker
from ..proxy.responses import REASONS, status_line
from ..static import parse_duration
from .oxyexpr import (COMPARE as _COMPARE, ExpressionError, ExpressionParser,
                      error as _error, tokens)

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
                    r"|\d+[eE][-+]?\d+|\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>&&|\|\||==|!=|<=|>=|"
                    r"[<>(),]))")
# function -> (argument types, result type)
FUNCTIONS = {
    "NetworkErrorRatio": ((), float),
    "ResponseCodeRatio": ((int, int, int, int), float),
    "LatencyAtQuantileMS": ((float,), int),
    "RequestThreshold": ((), int),
}


def _literal(kind, text):
    return float(text) if any(c in text for c in ".eE") else int(text)


class _Parser(ExpressionParser):
    def __init__(self, text):
        super().__init__(text, tokens(text, _TOKEN, _literal))

    def call(self, name_tok):
        name = name_tok[1]
        if name not in FUNCTIONS:
            raise _error(self.text, name_tok[2], "unsupported function %s (expected one of "
                         "%s)" % (name, ", ".join(sorted(FUNCTIONS))))
        arg_types, result = FUNCTIONS[name]
        self.take("op", "(")
        args = []
        while self.peek()[1] != ")":
            if args:
                self.take("op", ",")
            tok = self.take("num")
            args.append(tok)
        self.take("op", ")")
        if len(args) != len(arg_types):
            raise _error(self.text, name_tok[2], "%s takes %d argument(s), got %d"
                         % (name, len(arg_types), len(args)))
        for (kind, value, pos), want in zip(args, arg_types):
            if type(value) is not want:
                raise _error(self.text, pos, "%s: expected %s, got %s" % (
                    name, "float64" if want is float else "int",
                    "float64" if isinstance(value, float) else "int"))
        op = self.take("op")
        if op[1] not in _COMPARE:
            raise _error(self.text, op[2], "expected a comparison, found %r" % op[1])
        lit = self.take("num")
        if type(lit[1]) is not result:
            # oxy genericGT: "expected int, got float64" (its text says int for both)
            raise _error(self.text, lit[2], "%s: expected %s, got %s" % (
                op[1], "float64" if result is float else "int",
                "float64" if isinstance(lit[1], float) else "int"))
        return ("cmp", name, tuple(a[1] for a in args), op[1], lit[1])


def compile_expression(text):
    """A function(breaker) -> bool for ``text``; ExpressionError (with a caret) if bad."""
    if not isinstance(text, str):
        raise ExpressionError("expression: expected a string")
    tree = _Parser(text).parse()

    def build(node):
        if node[0] == "or":
            parts = [build(p) for p in node[1]]
            return lambda b: any(p(b) for p in parts)
        if node[0] == "and":
            parts = [build(p) for p in node[1]]
            return lambda b: all(p(b) for p in parts)
        _, name, args, op, lit = node
        compare = _COMPARE[op]
        if name == "NetworkErrorRatio":
            def value(b):
                total = b.total()
                return b.network_errors() / total if total else 0.0
        elif name == "ResponseCodeRatio":
            def value(b, args=args):
                return b.code_ratio(*args)
        elif name == "LatencyAtQuantileMS":
            def value(b, q=args[0]):
                return int(b.latency_at(q) // 1000)
        else:
            def value(b):
                return b.total()
        return lambda b: compare(value(b), lit)
    return build(tree)


def _duration(spec, key, default):
    v = spec.get(key)
    if v is None or v == "":
        return default
    try:
        d = parse_duration(v, allow_negative=True)
    except ValueError as e:
        raise ValueError("%s: %s" % (key, e)) from None
    return d if d > 0 else default        # Traefik: only a positive value is applied


class CircuitBreaker:
    __slots__ = ("breaker", "condition", "answer", "expression")
    static = False

    def __init__(self, spec, name="circuit-breaker"):
        if not isinstance(spec, dict):
            raise ValueError("circuitBreaker: expected a mapping")
        self.expression = spec.get("expression", "")
        self.condition = compile_expression(self.expression)
        code = spec.get("responseCode") or 503
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
            raise ValueError("responseCode: invalid HTTP status code %r" % (code,))
        body = REASONS.get(code, "").encode()
        # oxy's fallback: WriteHeader(code) + StatusText(code) (Go sniffs text/plain)
        self.answer = (status_line(code)
                       + (b"Content-Type: text/plain; charset=utf-8\r\n" if body else b"")
                       + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.breaker = Breaker(name.encode("utf-8"), _duration(spec, "checkPeriod", 0.1),
                               _duration(spec, "fallbackDuration", 10.0),
                               _duration(spec, "recoveryDuration", 10.0))

    def on_request(self, ex):
        return None if self.breaker.admit() else self.answer

    def on_complete(self, ex):
        # oxy records what the handlers after it answered and how long they took
        latency_us = (ex.loop.now - ex.started) * 1e6
        if self.breaker.record(ex.status, latency_us) and not self.breaker.tripped():
            if self.condition(self.breaker):
                self.breaker.trip()
