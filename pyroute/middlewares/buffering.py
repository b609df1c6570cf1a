"""buffering (Traefik pkg/middlewares/buffering, which is vulcand/oxy's buffer.Buffer).

The request body is read whole before the request goes on (``ClientConn.read_body``, kept
as ``ex.body``): in memory up to ``memRequestBodyBytes`` (0: 1 MiB, multibuf's default), the
rest in an unlinked temporary file; over ``maxRequestBodyBytes`` (0: no limit) — by its
Content-Length at once, or while a chunked body is read — the client gets 413 "Request Entity
Too Large" and the backend never sees the request. It is forwarded with a Content-Length
(oxy's copyRequest drops Transfer-Encoding), and sent again on each retry.

The response is held whole (memory up to ``memResponseBodyBytes``, then a temporary file)
and leaves with a Content-Length once complete; over ``maxResponseBodyBytes`` the client gets
500 "Internal Server Error" (oxy's write error through its error handler) and nothing of the
backend's response. HEAD, 1xx, 204 and 304 answers have no body to hold.

``retryExpression`` (oxy's threshold.go on vulcand/predicate): ``IsNetworkError()``
(the answer is 502 or 504), ``Attempts()`` (the first counts), ``ResponseCode()``,
``RequestMethod()``, compared (``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=``; the method with
``==``/``!=`` and a quoted string), joined with ``&&`` and ``||``, in parentheses. When it
holds for an answer, the answer is dropped and the request goes again, through the rest of
the chain, at most 10 times more (oxy's DefaultMaxRetryAttempts). A parse error is a config
error with a caret.

(``disableRequestBuffer`` / ``disableResponseBuffer`` are Traefik's code-only options: not
in the CRD, whose schema refuses them.)
"""
import re

from .._engine.exchange import WAIT
from ..proxy.responses import status_line
from .retry import _Attempt, has_body
from .oxyexpr import COMPARE as _COMPARE, ExpressionParser, error as _error, tokens

DEFAULT_MEM = 1048576               # multibuf DefaultMemBytes (oxy DefaultMemBodyBytes)
MAX_RETRY_ATTEMPTS = 10             # oxy DefaultMaxRetryAttempts


def _plain(status, text):
    # oxy: WriteHeader(status) + Write(text): Go sniffs text/plain
    body = text.encode()
    return (status_line(status) + b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


ANSWER_413 = _plain(413, "Request Entity Too Large")
ANSWER_500 = _plain(500, "Internal Server Error")

_TOKEN = re.compile(r'\s*(?:(?P<num>\d+)|(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)'
                    r'|(?P<name>[A-Za-z_]\w*)|(?P<op>&&|\|\||==|!=|<=|>=|[<>()]))')
# function -> its result: "bool" (a predicate on its own), int or str (compared)
FUNCTIONS = {"IsNetworkError": "bool", "Attempts": int, "ResponseCode": int,
             "RequestMethod": str}


def _literal(kind, text):
    if kind == "num":
        return int(text)
    return text[1:-1] if text[0] == "`" else re.sub(r"\\(.)", lambda c: c.group(1), text[1:-1])


class _Parser(ExpressionParser):
    def __init__(self, text):
        super().__init__(text, tokens(text, _TOKEN, _literal))

    def call(self, name_tok):
        name = name_tok[1]
        if name not in FUNCTIONS:
            raise _error(self.text, name_tok[2], "unsupported function %s (expected one of "
                         "%s)" % (name, ", ".join(sorted(FUNCTIONS))))
        self.take("op", "(")
        self.take("op", ")")
        result = FUNCTIONS[name]
        if result == "bool":
            return ("fn", name)
        op = self.peek()
        if op[0] != "op" or op[1] not in _COMPARE:
            # oxy: the parsed expression must be a predicate
            raise _error(self.text, op[2], "%s() must be compared (expected a comparison, "
                         "found %s)" % (name, "end of expression" if op[0] == "end"
                                        else repr(op[1])))
        self.take()
        if result is str and op[1] not in ("==", "!="):
            raise _error(self.text, op[2], "unsupported argument: %s() cannot be compared "
                         "with %s" % (name, op[1]))
        lit = self.take()
        want = "num" if result is int else "str"
        if lit[0] != want:
            # oxy intEQ / stringEQ: "expected int, got string"
            raise _error(self.text, lit[2], "expected %s, got %s" % (
                "int" if result is int else "string",
                {"num": "int", "str": "string"}.get(lit[0], repr(lit[1]))))
        return ("cmp", name, op[1], lit[1])


def compile_expression(text):
    """A function(attempt, code, method) -> bool for ``text``; ValueError with a caret."""
    if not isinstance(text, str):
        raise ValueError("retryExpression: expected a string")
    try:
        tree = _Parser(text).parse()
    except ValueError as e:
        raise ValueError("retryExpression: %s" % e) from None

    def build(node):
        if node[0] == "or":
            parts = [build(p) for p in node[1]]
            return lambda a, c, m: any(p(a, c, m) for p in parts)
        if node[0] == "and":
            parts = [build(p) for p in node[1]]
            return lambda a, c, m: all(p(a, c, m) for p in parts)
        if node[0] == "fn":
            return lambda a, c, m: c == 502 or c == 504
        _, name, op, lit = node
        compare = _COMPARE[op]
        if name == "Attempts":
            return lambda a, c, m: compare(a, lit)
        if name == "ResponseCode":
            return lambda a, c, m: compare(c, lit)
        lit_b = lit.encode("latin-1", "replace")
        return lambda a, c, m: compare(m, lit_b)
    return build(tree)


def _size(spec, key):
    v = spec.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("%s: expected an integer number of bytes, got %r" % (key, v))
    if v < 0:
        # oxy's options: "max bytes should be >= 0 got -1"
        raise ValueError("%s: %s bytes should be >= 0 got %d"
                         % (key, "max" if key.startswith("max") else "mem", v))
    return v


class Buffering:
    __slots__ = ("max_request", "mem_request", "max_response", "mem_response", "expression",
                 "predicate")
    static = False
    compat_note = ("the request body in memory up to memRequestBodyBytes, then in a temporary "
                   "file, sent with a Content-Length; the response held whole the same way; "
                   "retryExpression as oxy's (IsNetworkError, Attempts, ResponseCode, "
                   "RequestMethod)")
    # what retry's _Attempt reads of its middleware (no backoff, no timeout)
    attempts = MAX_RETRY_ATTEMPTS + 1
    initial = 0.0
    timeout = 0.0
    network = False
    over_limit = ANSWER_500          # the answer to a response over maxResponseBodyBytes

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("buffering: expected a mapping")
        max_request = _size(spec, "maxRequestBodyBytes")
        max_response = _size(spec, "maxResponseBodyBytes")
        # 0: oxy's defaults (max: no limit; mem: multibuf's 1 MiB)
        self.max_request = max_request if max_request > 0 else -1
        self.max_response = max_response if max_response > 0 else -1
        self.mem_request = _size(spec, "memRequestBodyBytes") or DEFAULT_MEM
        self.mem_response = _size(spec, "memResponseBodyBytes") or DEFAULT_MEM
        self.expression = spec.get("retryExpression") or ""
        self.predicate = compile_expression(self.expression) if self.expression else None

    def on_request(self, ex):
        if has_body(ex.req):
            req = ex.req
            if req.method == b"CONNECT" and req.content_length < 0:
                return None          # a CONNECT's unknown-length body is tunnel data
            ready = ex.conn.read_body(ex, self.max_request, self._with_body,
                                      self.mem_request)
            if ready is None:
                return WAIT          # _with_body once it is read
            return self._start(ex, ready[1])
        return self._start(ex, False)

    def _with_body(self, ex, body, too_large):
        answer = self._start(ex, too_large)
        if answer is None:
            ex.resume()
        else:
            ex.answer(answer)

    def _start(self, ex, too_large):
        if too_large is None:
            return ANSWER_500        # the body could not be read (oxy's error handler)
        if too_large:
            return ANSWER_413
        ex.buffering = self
        if self.predicate is not None and (ex.body is not None or not has_body(ex.req)):
            attempt = ex.retry
            while attempt is not None and attempt.mw is not self:
                attempt = attempt.outer
            if attempt is not None:
                ex.retry = attempt   # this middleware again (a service-level chain re-run)
            else:
                ex.retry = _BufferAttempt(self, None, ex)
                if not ex.attempts:
                    ex.attempts = 1
        return None


class _BufferAttempt(_Attempt):
    """oxy's retry loop for one exchange: the answer (the backend's, or the proxy's 502/504
    when it failed) is dropped and the request goes again while ``retryExpression`` holds
    (at most 10 times more)."""
    __slots__ = ()

    def _holds(self, ex, status):
        return self.n <= MAX_RETRY_ATTEMPTS and self.mw.predicate(self.n, status, ex.req.method)

    def network_retry(self, ex, status=502):
        if self._holds(ex, status):
            ex.retry = self
            return True
        return self.outer is not None and self.outer.network_retry(ex, status)

    def error_retry(self, ex, status):
        if self._holds(ex, status):
            ex.retry = self
            return True
        return self.outer is not None and self.outer.error_retry(ex, status)

    def status_retry(self, ex, status):
        if self._holds(ex, status):
            ex.retry = self
            return True
        return self.outer is not None and self.outer.status_retry(ex, status)
