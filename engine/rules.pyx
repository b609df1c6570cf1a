# cython: language_level=3
"""Traefik v3's router rule language: lexer, parser, compiled matcher programs, route table.

Load time (Python-level code, once per configuration): a rule is lexed and parsed the way Go's
``go/parser.ParseExpr`` + ``vulcand/predicate`` read it in Traefik (``pkg/rules``,
``pkg/muxer/http``), validated like Traefik's matcher builders, and compiled into a ``Rule``: a
small tree of nodes over typed matchers (literals as bytes, regexps compiled once with RE2).

Request time (C): ``RouteTable.route`` derives what Traefik's matchers see of the request
(canonical host, routing path, parsed query, client IP: each lazily, only when a matcher reads
it), looks up the request host's bucket and walks it merged with the catch-all list in priority
order. The only Python calls per request are RE2 searches for regexp matchers.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdlib cimport qsort
from libc.string cimport memchr, memcmp, memcpy, memset

import ipaddress

import re2

from .errors import RuleSyntaxError

cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char* src, void* dst)

cdef extern from "sys/socket.h" nogil:
    int AF_INET
    int AF_INET6

# RE2 is called through the lowest-level entry point google-re2 offers (RE2.Match(anchor, text,
# pos, endpos) -> spans); bound once per regexp at load (STYLE.md: bind Python objects once).
cdef object _UNANCHORED = re2._Anchor.UNANCHORED
cdef object _RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.never_capture = True   # only "does it match" is asked: no capture bookkeeping
_RE2_OPTIONS.log_errors = False
cdef object _RE2_CHECK_OPTIONS = re2.Options()
_RE2_CHECK_OPTIONS.log_errors = False

# Traefik reserves priorities above MaxInt64 - 1000 for its internal routers (pkg/server/router).
MAX_USER_PRIORITY = 9223372036854775807 - 1000

# ---------------------------------------------------------------------------------------------
# Matcher names per syntax (Traefik pkg/muxer/http: httpFuncs, httpFuncsV2), with the number of
# arguments each accepts (None: any number, v2).

V3_MATCHERS = {
    "ClientIP": (1,), "Method": (1,), "Host": (1,), "HostRegexp": (1,), "Path": (1,),
    "PathRegexp": (1,), "PathPrefix": (1,), "Header": (2,), "HeaderRegexp": (2,),
    "Query": (1, 2), "QueryRegexp": (1, 2),
}
V2_MATCHERS = {
    "Host": None, "HostHeader": None, "HostRegexp": None, "ClientIP": None, "Path": None,
    "PathPrefix": None, "Method": None, "Headers": None, "HeadersRegexp": None, "Query": None,
}


def _spellings(table):
    # Traefik pkg/rules NewParser: each name as written, lower, UPPER and Title(lower).
    out = {}
    for name in table:
        for spelling in (name, name.lower(), name.upper(), name.lower().capitalize()):
            out[spelling] = name
    return out


cdef dict _SPELLINGS = {"v3": _spellings(V3_MATCHERS), "v2": _spellings(V2_MATCHERS)}
cdef dict _ARITY = {"v3": V3_MATCHERS, "v2": V2_MATCHERS}


def matcher_spellings(syntax="v3"):
    """Every matcher-name spelling the given syntax accepts, mapped to its canonical name."""
    return dict(_SPELLINGS[_check_syntax(syntax)])


cdef str _check_syntax(syntax):
    # "default": what Traefik's internal routers say (pkg/provider/traefik/internal.go), v3
    if syntax is None or syntax == "" or syntax == "v3" or syntax == "default":
        return "v3"
    if syntax == "v2":
        return "v2"
    raise ValueError("unknown rule syntax %r: expected 'v3' or 'v2'" % (syntax,))


# ---------------------------------------------------------------------------------------------
# Lexer: Go's scanner restricted to what a rule can hold. Positions are byte offsets into the
# UTF-8 rule. A newline after an identifier, a literal or ')' is an automatic semicolon (Go spec,
# "Semicolons"), which is why a rule may break lines after '&&' or '(' but not before them.

cdef enum Tok:
    T_EOF = 0
    T_IDENT = 1
    T_STRING = 2
    T_LPAREN = 3
    T_RPAREN = 4
    T_COMMA = 5
    T_AND = 6
    T_OR = 7
    T_NOT = 8
    T_SEMI = 9       # automatic semicolon (newline or end of input after an operand)
    T_ELLIPSIS = 10
    T_NUMBER = 11
    T_OTHER = 12


cdef inline bint _is_letter(unsigned char c) noexcept:
    return (c >= b'a' and c <= b'z') or (c >= b'A' and c <= b'Z') or c == b'_' or c >= 0x80


cdef inline bint _is_digit(unsigned char c) noexcept:
    return c >= b'0' and c <= b'9'


cdef inline int _hexval(unsigned char c) noexcept:
    if 48 <= c <= 57:       # 0-9
        return c - 48
    if 97 <= c <= 102:      # a-f
        return c - 87
    if 65 <= c <= 70:       # A-F
        return c - 55
    return -1


cdef str _re_error(object e):
    msg = e.args[0] if e.args else ""
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


class _Err(Exception):
    """Internal: a syntax error before it is dressed as RuleSyntaxError."""

    def __init__(self, message, pos, matcher=None):
        self.message = message
        self.pos = pos
        self.matcher = matcher


cdef inline int _simple_escape(unsigned char c) noexcept:
    # Go's one-letter escapes in an interpreted string (\' exists only in rune literals)
    if c == 97:
        return 7      # \a
    if c == 98:
        return 8      # \b
    if c == 102:
        return 12     # \f
    if c == 110:
        return 10     # \n
    if c == 114:
        return 13     # \r
    if c == 116:
        return 9      # \t
    if c == 118:
        return 11     # \v
    if c == 92 or c == 34:
        return c      # \\ and \"
    return -1


cdef bytes _unquote_interpreted(const unsigned char* s, Py_ssize_t start, Py_ssize_t n,
                                Py_ssize_t* end):
    # Go interpreted string literal starting at s[start] == '"'; sets end past the closing quote.
    cdef Py_ssize_t i = start + 1, j, digits
    cdef unsigned char c
    cdef long long v
    cdef int base, hv
    out = bytearray()
    while True:
        if i >= n or s[i] == b'\n':
            raise _Err("string literal not terminated", start)
        c = s[i]
        if c == b'"':
            end[0] = i + 1
            return bytes(out)
        if c != b'\\':
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            raise _Err("string literal not terminated", start)
        c = s[i + 1]
        v = _simple_escape(c)
        if v >= 0:
            out.append(<unsigned char>v)
            i += 2
            continue
        if c >= b'0' and c <= b'7':
            digits, base = 3, 8
            j = i + 1
        elif c == b'x':
            digits, base = 2, 16
            j = i + 2
        elif c == b'u':
            digits, base = 4, 16
            j = i + 2
        elif c == b'U':
            digits, base = 8, 16
            j = i + 2
        else:
            raise _Err("unknown escape sequence '\\%s' in string literal" % chr(c), i)
        v = 0
        for _ in range(digits):
            if j >= n:
                raise _Err("string literal not terminated", start)
            hv = _hexval(s[j])
            if hv < 0 or hv >= base:
                raise _Err("illegal character %r in escape sequence" % chr(s[j]), j)
            v = v * base + hv
            j += 1
        if base == 8:
            if v > 255:
                raise _Err("octal escape value %d > 255" % v, i)
            out.append(<unsigned char>v)
        elif c == b'x':
            out.append(<unsigned char>v)
        else:
            if v > 0x10FFFF or (0xD800 <= v < 0xE000):
                raise _Err("escape sequence is invalid Unicode code point", i)
            out += chr(v).encode("utf-8")
        i = j


cdef list _lex(bytes src):
    cdef const unsigned char* s = src
    cdef Py_ssize_t n = len(src), i = 0, j, start
    cdef bint semi = False
    cdef unsigned char c
    cdef Py_ssize_t end = 0
    toks = []
    # Go's scanner: NUL is an illegal character anywhere, a byte order mark is skipped at the
    # very start and illegal elsewhere.
    j = src.find(b"\x00")
    if j >= 0:
        raise _Err("illegal character NUL", j)
    if src.startswith(b"\xef\xbb\xbf"):
        i = 3
    j = src.find(b"\xef\xbb\xbf", i)
    if j >= 0:
        raise _Err("illegal byte order mark", j)
    while True:
        # blanks and comments; a newline (or a comment holding one) ends an operand
        while i < n:
            c = s[i]
            if c == b' ' or c == b'\t' or c == b'\r':
                i += 1
            elif c == b'\n':
                if semi:
                    toks.append((T_SEMI, i, i + 1, None))
                    semi = False
                i += 1
            elif c == b'/' and i + 1 < n and s[i + 1] == b'/':
                if semi:
                    toks.append((T_SEMI, i, i, None))
                    semi = False
                while i < n and s[i] != b'\n':
                    i += 1
            elif c == b'/' and i + 1 < n and s[i + 1] == b'*':
                j = src.find(b"*/", i + 2)
                if j < 0:
                    raise _Err("comment not terminated", i)
                if semi and memchr(s + i, b'\n', j - i) != NULL:
                    toks.append((T_SEMI, i, i, None))
                    semi = False
                i = j + 2
            else:
                break
        if i >= n:
            if semi:
                toks.append((T_SEMI, n, n, None))
            toks.append((T_EOF, n, n, None))
            return toks
        start = i
        c = s[i]
        if _is_letter(c):
            while i < n and (_is_letter(s[i]) or _is_digit(s[i])):
                i += 1
            toks.append((T_IDENT, start, i, src[start:i].decode("utf-8", "replace")))
            semi = True
        elif _is_digit(c) or (c == b'.' and i + 1 < n and _is_digit(s[i + 1])):
            while i < n and (_is_letter(s[i]) or _is_digit(s[i]) or s[i] == b'.'):
                i += 1
            toks.append((T_NUMBER, start, i, src[start:i].decode("utf-8", "replace")))
            semi = True
        elif c == b'`':
            j = src.find(b'`', i + 1)
            if j < 0:
                raise _Err("raw string literal not terminated", start)
            # Go drops carriage returns from raw string literals (spec: "Carriage return
            # characters inside raw string literals are discarded").
            toks.append((T_STRING, start, j + 1, src[i + 1:j].replace(b'\r', b'')))
            i = j + 1
            semi = True
        elif c == b'"':
            value = _unquote_interpreted(s, i, n, &end)
            toks.append((T_STRING, start, end, value))
            i = end
            semi = True
        elif c == b"'":
            raise _Err("single quotes do not make a string in a rule: values are Go string "
                       "literals, use backticks or double quotes", start)
        elif c == b'(':
            toks.append((T_LPAREN, start, i + 1, "("))
            i += 1
            semi = False
        elif c == b')':
            toks.append((T_RPAREN, start, i + 1, ")"))
            i += 1
            semi = True
        elif c == b',':
            toks.append((T_COMMA, start, i + 1, ","))
            i += 1
            semi = False
        elif c == b'&' and i + 1 < n and s[i + 1] == b'&':
            toks.append((T_AND, start, i + 2, "&&"))
            i += 2
            semi = False
        elif c == b'|' and i + 1 < n and s[i + 1] == b'|':
            toks.append((T_OR, start, i + 2, "||"))
            i += 2
            semi = False
        elif c == b'!' and not (i + 1 < n and s[i + 1] == b'='):
            toks.append((T_NOT, start, i + 1, "!"))
            i += 1
            semi = False
        elif c == b'.' and i + 2 < n and s[i + 1] == b'.' and s[i + 2] == b'.':
            toks.append((T_ELLIPSIS, start, i + 3, "..."))
            i += 3
            semi = False
        else:
            # any other operator or character: the parser reports it where it stands
            j = i + 1
            while j < n and j < i + 3 and s[j] in b'=&|<>-+*%^!:.~':
                j += 1
            toks.append((T_OTHER, start, j, src[start:j].decode("utf-8", "replace")))
            i = j
            semi = False


# ---------------------------------------------------------------------------------------------
# Parser: Go's expression grammar restricted to what vulcand/predicate accepts in a rule:
#   expr := and ('||' and)* ; and := unary ('&&' unary)* ; unary := '!' unary | primary
#   primary := '(' expr ')' | NAME '(' [STRING {',' STRING} ['...'] [','] ] ')'
# AST: ("or"|"and", left, right) | ("not", x) | ("call", name, [values], pos, [arg positions])


cdef str _describe(tuple tok):
    cdef int kind = tok[0]
    if kind == T_EOF:
        return "end of rule"
    if kind == T_SEMI:
        return "line break"
    if kind == T_STRING:
        return "string literal"
    return "'%s'" % tok[3]


@cython.final
cdef class _Parser:
    cdef list toks
    cdef Py_ssize_t i
    cdef dict names
    cdef str syntax

    def __init__(self, list toks, dict names, str syntax):
        self.toks = toks
        self.i = 0
        self.names = names
        self.syntax = syntax

    cdef tuple peek(self):
        return self.toks[self.i]

    cdef tuple take(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    cdef object parse(self):
        x = self.parse_or()
        t = self.peek()
        if t[0] == T_SEMI and self.toks[self.i + 1][0] == T_EOF:
            return x
        if t[0] == T_EOF:
            return x
        if t[0] == T_SEMI:
            nxt = self.toks[self.i + 1]
            raise _Err("unexpected %s after the end of the rule: a line break after an operand "
                       "ends a Go expression; break lines after '&&', '||' or '(' instead"
                       % _describe(nxt), nxt[1])
        raise _Err("unexpected %s: expected '&&', '||' or the end of the rule" % _describe(t),
                   t[1])

    cdef object parse_or(self):
        x = self.parse_and()
        while self.peek()[0] == T_OR:
            self.take()
            x = ("or", x, self.parse_and())
        return x

    cdef object parse_and(self):
        x = self.parse_unary()
        while self.peek()[0] == T_AND:
            self.take()
            x = ("and", x, self.parse_unary())
        return x

    cdef object parse_unary(self):
        if self.peek()[0] == T_NOT:
            self.take()
            return ("not", self.parse_unary())
        return self.parse_primary()

    cdef object parse_primary(self):
        t = self.take()
        cdef int kind = t[0]
        if kind == T_LPAREN:
            x = self.parse_or()
            c = self.take()
            if c[0] != T_RPAREN:
                raise _Err("expected ')' to close the '(' at position %d, found %s"
                           % (t[1], _describe(c)), c[1])
            return x
        if kind == T_IDENT:
            return self.parse_call(t)
        if kind == T_STRING:
            raise _Err("a string literal is not a rule: expected a matcher such as "
                       "Host(`example.com`)", t[1])
        raise _Err("expected a matcher, '!' or '(', found %s" % _describe(t), t[1])

    cdef object parse_call(self, tuple name_tok):
        name = name_tok[3]
        canonical = self.names.get(name)
        lp = self.take()
        if lp[0] != T_LPAREN:
            if lp[0] == T_SEMI:
                raise _Err("unexpected line break after %s: the '(' must be on the same line"
                           % name, lp[1], canonical)
            raise _Err("expected '(' after %s, found %s" % (name, _describe(lp)), lp[1],
                       canonical)
        if canonical is None:
            raise _Err(_unknown_matcher(name, self.syntax), name_tok[1])
        values = []
        positions = []
        ellipsis = False
        while True:
            t = self.peek()
            if t[0] == T_RPAREN or t[0] == T_EOF:
                break
            t = self.take()
            if t[0] == T_STRING:
                values.append(t[3])
                positions.append(t[1])
            elif t[0] == T_NUMBER:
                raise _Err("argument %s of %s is a number: arguments are string literals "
                           "(backticks or double quotes)" % (t[3], name), t[1], canonical)
            elif t[0] == T_IDENT:
                raise _Err("%s is not defined: arguments of %s are string literals "
                           "(backticks or double quotes)" % (t[3], name), t[1], canonical)
            else:
                raise _Err("expected a string literal argument in %s(...), found %s"
                           % (name, _describe(t)), t[1], canonical)
            if self.peek()[0] == T_ELLIPSIS:
                self.take()
                ellipsis = True   # Go accepts f(a...): reflect.Call passes it through
            t = self.peek()
            if t[0] == T_COMMA:
                self.take()
                if ellipsis:
                    break
                continue
            if t[0] == T_SEMI:
                raise _Err("missing ',' before newline in argument list of %s" % name, t[1],
                           canonical)
            break
        rp = self.take()
        if rp[0] != T_RPAREN:
            raise _Err("expected ',' or ')' in the arguments of %s, found %s"
                       % (name, _describe(rp)), rp[1], canonical)
        return ("call", canonical, values, name_tok[1], positions)


cdef str _unknown_matcher(str name, str syntax):
    hint = ""
    for other in ("v3", "v2"):
        for spelling, canonical in _SPELLINGS[other].items():
            if spelling.lower() == name.lower():
                if other == syntax:
                    hint = (" (matcher names are case-sensitive: write %s, %s, %s or %s)"
                            % (canonical, canonical.lower(), canonical.upper(),
                               canonical.lower().capitalize()))
                elif not hint:
                    hint = " (%s is a %s-syntax matcher; this rule uses %s syntax)" % (
                        canonical, other, syntax)
    return "unsupported matcher %s%s" % (name, hint)


# ---------------------------------------------------------------------------------------------
# Compiling: validation as Traefik's matcher builders do it, then nodes and matchers.

cdef bint _is_ascii(bytes b):
    cdef const unsigned char* s = b
    cdef Py_ssize_t i
    for i in range(len(b)):
        if s[i] >= 0x80:
            return False
    return True


cdef bytes _ascii_lower(bytes b):
    return bytes([c + 32 if 65 <= c <= 90 else c for c in b])


cdef bytes _ascii_upper(bytes b):
    return bytes([c - 32 if 97 <= c <= 122 else c for c in b])


# RFC 9110 token characters: what Go's CanonicalMIMEHeaderKey accepts in a header name.
cdef bytes _TOKEN = (b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                     b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


cdef bint _valid_header_name(bytes b):
    for c in b:
        if c not in _TOKEN:
            return False
    return len(b) > 0


cdef bytes _host_key(bytes host):
    # Bucket key of an exact host: trailing dots do not count (Traefik's Host matcher accepts a
    # trailing period on either side), so keys strip them all.
    return host.rstrip(b".")


def _quote_meta(str s):
    # Go's regexp.QuoteMeta
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in s)


cdef _parse_ip_token(str text):
    # net.ParseIP: IPv4 (no leading zeros) or IPv6 without a zone -> 16 bytes
    if "%" in text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


cdef int _add_net(list nets, str text) except -1:
    # Traefik pkg/ip NewChecker: net.ParseIP, else net.ParseCIDR.
    ip16 = _parse_ip_token(text)
    if ip16 is not None:
        nets.append((0, ip16, b"\xff" * 16))
        return 0
    addr, slash, bits = text.partition("/")
    ip16 = _parse_ip_token(addr)
    if not slash or ip16 is None or not bits.isdigit() or not bits.isascii():
        raise ValueError("invalid IP address or CIDR %r" % text)
    is4 = ":" not in addr
    width = 32 if is4 else 128
    prefix = int(bits)
    if prefix > width:
        raise ValueError("invalid CIDR %r: prefix longer than %d bits" % (text, width))
    mask_int = ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1)
    mask = mask_int.to_bytes(width // 8, "big")
    if is4:
        net4 = bytes(a & m for a, m in zip(ip16[12:], mask))
        nets.append((4, net4 + b"\x00" * 12, mask + b"\x00" * 12))
        return 0
    net16 = bytes(a & m for a, m in zip(ip16, mask))
    if net16[:10] == b"\x00" * 10 and net16[10:12] == b"\xff\xff":
        # Go's IPNet.Contains: an IPv6-written network whose address is IPv4-mapped acts as an
        # IPv4 network with the mask's last 4 bytes (networkNumberAndMask).
        nets.append((4, net16[12:] + b"\x00" * 12, mask[12:] + b"\x00" * 12))
        return 0
    nets.append((6, net16, mask))
    return 0


def _brace_indices(str s):
    # gorilla/mux braceIndices
    level = 0
    idx = 0
    idxs = []
    for i, c in enumerate(s):
        if c == "{":
            level += 1
            if level == 1:
                idx = i
        elif c == "}":
            level -= 1
            if level == 0:
                idxs.append((idx, i + 1))
            elif level < 0:
                raise ValueError("mux: unbalanced braces in %r" % s)
    if level != 0:
        raise ValueError("mux: unbalanced braces in %r" % s)
    return idxs


def _mux_pattern(str tpl, str typ):
    """containous/mux newRouteRegexp: the regexp a v2 template stands for, and its variables.
    Capture groups inside a variable's pattern are accepted, as Traefik's fork accepts them."""
    idxs = _brace_indices(tpl)
    default = {"query": ".*", "host": "[^.]+"}.get(typ, "[^/]+")
    # containous/mux (Traefik's fork): host matching is case-insensitive
    out = ["(?i)^" if typ == "host" else "^"]
    names = []
    end = 0
    for a, b in idxs:
        raw = tpl[end:a]
        end = b
        name, colon, patt = tpl[a + 1:b - 1].partition(":")
        if not colon:
            patt = default
        if not name or not patt:
            raise ValueError("mux: missing name or pattern in %r" % tpl[a:b])
        out.append(_quote_meta(raw) + "(" + patt + ")")
        names.append(name)
        try:
            re2.compile("^%s$" % patt, _RE2_CHECK_OPTIONS)
        except re2.error as e:
            raise ValueError("invalid regexp %r in template %r: %s" % (patt, tpl, _re_error(e)))
    out.append(_quote_meta(tpl[end:]))
    if typ == "query" and tpl.partition("=")[2] == "":
        out.append(default)
    if typ != "prefix":
        out.append("$")
    pattern = "".join(out)
    try:
        re2.compile(pattern, _RE2_CHECK_OPTIONS)
    except re2.error as e:
        raise ValueError("invalid template %r: %s" % (tpl, _re_error(e)))
    return pattern, names


cdef object _compile_re(str pattern):
    # A regexp with Go's RE2 semantics, compiled once; returns the bound Match method.
    rx = re2.compile(pattern.encode("utf-8", "surrogateescape"), _RE2_OPTIONS)
    return rx._regexp.Match


def go_regexp(str pattern):
    """A regexp as Go's ``regexp.Compile`` builds it (RE2 syntax, leftmost-first, UTF-8
    patterns; the rules' matchers use the same compilation), with its capture groups, for
    the middlewares that match and rewrite with one (stripPrefixRegex, replacePathRegex,
    redirectRegex). Compiled once at load; raises ValueError with RE2's message."""
    try:
        return re2.compile(pattern.encode("utf-8", "surrogateescape"), _RE2_CHECK_OPTIONS)
    except re2.error as e:
        raise ValueError("error parsing regexp: %s" % _re_error(e)) from None


cdef bint _re_matches_empty(object match_fn) except -1:
    return (<tuple>(<list>match_fn(_UNANCHORED, b"", 0, 0))[0])[0] != -1


@cython.final
cdef class _Builder:
    """Collects nodes and matchers for one rule (load time only)."""
    cdef list nodes      # (kind, a, b)
    cdef list matchers   # dicts
    cdef list nets
    cdef list keep
    cdef int uses
    cdef str syntax

    def __init__(self, str syntax):
        self.nodes = []
        self.matchers = []
        self.nets = []
        self.keep = []
        self.uses = 0
        self.syntax = syntax

    cdef int node(self, int kind, int a, int b):
        self.nodes.append((kind, a, b))
        return len(self.nodes) - 1

    def leaf(self, int kind, bytes s1=None, bytes s2=None, object regex=None, int flags=0,
             list nets=None):
        ip_start = len(self.nets)
        if nets:
            self.nets.extend(nets)
        self.matchers.append((kind, flags, s1, s2, regex, ip_start, len(nets) if nets else 0))
        return self.node(N_LEAF, len(self.matchers) - 1, 0)

    cdef int join(self, int kind, list leaves):
        cdef int x = leaves[0]
        for y in leaves[1:]:
            x = self.node(kind, x, y)
        return x

    cdef int build(self, object ast) except -1:
        tag = ast[0]
        if tag == "and":
            return self.node(N_AND, self.build(ast[1]), self.build(ast[2]))
        if tag == "or":
            return self.node(N_OR, self.build(ast[1]), self.build(ast[2]))
        if tag == "not":
            return self.node(N_NOT, self.build(ast[1]), 0)
        return self.call(ast[1], ast[2], ast[3], ast[4])

    cdef int call(self, str name, list values, Py_ssize_t pos, list positions) except -1:
        # Traefik pkg/rules CheckRule, then the matcher builder's own checks.
        if not values:
            raise _Err("no args for matcher %s" % name, pos, name)
        for v, p in zip(values, positions):
            if len(v) == 0:
                raise _Err("empty args for matcher %s" % name, p, name)
        arity = _ARITY[self.syntax][name]
        if arity is not None and len(values) not in arity:
            raise _Err("unexpected number of parameters; got %d, expected %s"
                       % (len(values), " or ".join(str(a) for a in arity)), pos, name)
        try:
            if self.syntax == "v3":
                return self.call_v3(name, values, positions)
            return self.call_v2(name, values, positions)
        except _Err:
            raise
        except (ValueError, re2.error) as e:
            raise _Err(str(e), pos, name)

    cdef str text(self, bytes v):
        return v.decode("utf-8", "surrogateescape")

    cdef object regexp(self, str name, bytes v, Py_ssize_t p):
        try:
            return _compile_re(self.text(v))
        except re2.error as e:
            raise _Err("compiling %s matcher: invalid regexp %r: %s"
                       % (name, self.text(v), _re_error(e)), p, name)

    cdef int call_v3(self, str name, list values, list positions) except -1:
        cdef bytes v = values[0]
        cdef Py_ssize_t p = positions[0]
        if name == "Host":
            if not _is_ascii(v):
                raise _Err("invalid value %r for Host matcher, non-ASCII characters are not "
                           "allowed" % self.text(v), p, name)
            self.uses |= U_HOST
            v = _ascii_lower(v)
            if v == b"*":
                return self.leaf(M_HOST_ANY)
            return self.leaf(M_HOST, v)
        if name == "HostRegexp":
            if not _is_ascii(v):
                raise _Err("invalid value %r for HostRegexp matcher, non-ASCII characters are "
                           "not allowed" % self.text(v), p, name)
            self.uses |= U_HOST
            rx = self.regexp(name, v, p)
            # Traefik: re.MatchString(host) || re.MatchString(cnameFlatten); without CNAME
            # flattening the second is "", so a regexp matching "" matches every request.
            return self.leaf(M_HOST_REGEXP, regex=rx,
                             flags=F_EMPTY_MATCHES if _re_matches_empty(rx) else 0)
        if name == "Path" or name == "PathPrefix":
            if not v.startswith(b"/"):
                raise _Err("path %r does not start with a '/'" % self.text(v), p, name)
            self.uses |= U_PATH
            return self.leaf(M_PATH if name == "Path" else M_PATH_PREFIX, v)
        if name == "PathRegexp":
            self.uses |= U_PATH
            return self.leaf(M_PATH_REGEXP, regex=self.regexp(name, v, p))
        if name == "Method":
            self.uses |= U_METHOD
            return self.leaf(M_METHOD, _ascii_upper(v))
        if name == "Header" or name == "HeaderRegexp":
            self.uses |= U_HEADERS
            key = self.header_key(v)
            if key is None:
                return self.leaf(M_NEVER)
            if name == "Header":
                return self.leaf(M_HEADER, key, values[1])
            return self.leaf(M_HEADER_REGEXP, key, regex=self.regexp(name, values[1],
                                                                    positions[1]))
        if name == "Query" or name == "QueryRegexp":
            self.uses |= U_QUERY
            if len(values) == 1:
                return self.leaf(M_QUERY, v, b"")
            if name == "Query":
                return self.leaf(M_QUERY, v, values[1])
            return self.leaf(M_QUERY_REGEXP, v, regex=self.regexp(name, values[1],
                                                                  positions[1]))
        if name == "ClientIP":
            return self.client_ip(values, positions)
        raise AssertionError(name)

    cdef object header_key(self, bytes key):
        # http.CanonicalHeaderKey leaves a name with a non-token byte as is; such a name can
        # never be in Go's header map. Go also takes Host and Transfer-Encoding out of the map
        # (net/http readRequest, transfer.go), so matchers on them never match.
        if not _valid_header_name(key):
            return None
        key = _ascii_lower(key)
        if key == b"host" or key == b"transfer-encoding":
            return None
        return key

    cdef int client_ip(self, list values, list positions) except -1:
        nets = []
        for v, p in zip(values, positions):
            try:
                _add_net(nets, self.text(v))
            except ValueError as e:
                raise _Err("initializing IP checker for ClientIP matcher: %s" % e, p, "ClientIP")
        self.uses |= U_CLIENT_IP
        return self.leaf(M_CLIENT_IP, nets=nets)

    cdef int call_v2(self, str name, list values, list positions) except -1:
        leaves = []
        if name == "Host" or name == "HostHeader":
            for v, p in zip(values, positions):
                if not _is_ascii(v):
                    raise _Err("invalid value %r for \"Host\" matcher, non-ASCII characters are "
                               "not allowed" % self.text(v), p, name)
                leaves.append(self.leaf(M_HOST_V2, _ascii_lower(v)))
            self.uses |= U_HOST
            return self.join(N_OR, leaves)
        if name == "HostRegexp":
            for v, p in zip(values, positions):
                if not _is_ascii(v):
                    raise _Err("invalid value %r for HostRegexp matcher, non-ASCII characters "
                               "are not allowed" % self.text(v), p, name)
                pattern, _ = self.template(v, "host", p, name)
                leaves.append(self.leaf(M_HOST_RAW_REGEXP, regex=_compile_re(pattern),
                                        flags=0 if ":" in pattern else F_STRIP_PORT))
            self.uses |= U_HOST
            return self.join(N_OR, leaves)
        if name == "Path" or name == "PathPrefix":
            for v, p in zip(values, positions):
                if not v.startswith(b"/"):
                    raise _Err("mux: path must start with a slash, got %r" % self.text(v), p,
                               name)
                if b"{" not in v and b"}" not in v:
                    leaves.append(self.leaf(M_PATH if name == "Path" else M_PATH_PREFIX, v))
                else:
                    pattern, _ = self.template(v, "path" if name == "Path" else "prefix", p,
                                               name)
                    leaves.append(self.leaf(M_PATH_REGEXP, regex=_compile_re(pattern)))
            self.uses |= U_PATH
            return self.join(N_OR, leaves)
        if name == "Method":
            for v in values:
                leaves.append(self.leaf(M_METHOD, _ascii_upper(v)))
            self.uses |= U_METHOD
            return self.join(N_OR, leaves)
        if name == "Headers" or name == "HeadersRegexp":
            if len(values) % 2:
                raise _Err("mux: number of parameters must be multiple of 2, got %r"
                           % [self.text(v) for v in values], positions[0], name)
            for i in range(0, len(values), 2):
                key = self.header_key(values[i])
                if key is None:
                    leaves.append(self.leaf(M_NEVER))
                elif name == "Headers":
                    leaves.append(self.leaf(M_HEADER, key, values[i + 1]))
                else:
                    leaves.append(self.leaf(M_HEADER_REGEXP, key, regex=self.regexp(
                        name, values[i + 1], positions[i + 1])))
            self.uses |= U_HEADERS
            return self.join(N_AND, leaves)
        if name == "Query":
            # Traefik v2: each argument split on its first '=', all pieces paired up.
            pieces = []
            for v in values:
                pieces.extend(v.split(b"=", 1))
            if len(pieces) % 2:
                raise _Err("mux: number of parameters must be multiple of 2, got %r"
                           % [self.text(x) for x in pieces], positions[0], name)
            seen = set()
            for i in range(0, len(pieces), 2):
                tpl = pieces[i] + b"=" + pieces[i + 1]
                key = tpl.split(b"=", 1)[0]
                if b"{" not in tpl and b"}" not in tpl:
                    if pieces[i + 1] == b"":
                        leaves.append(self.leaf(M_QUERY_V2_ANY, key))
                    else:
                        leaves.append(self.leaf(M_QUERY_V2_EQ, key, pieces[i + 1]))
                    continue
                pattern, names = self.template(tpl, "query", positions[0], name)
                for var in names:
                    if var in seen:
                        raise _Err("mux: duplicated route variable %s" % var, positions[0], name)
                    seen.add(var)
                leaves.append(self.leaf(M_QUERY_V2_REGEXP, key, regex=_compile_re(pattern)))
            self.uses |= U_QUERY
            return self.join(N_AND, leaves)
        if name == "ClientIP":
            return self.client_ip(values, positions)
        raise AssertionError(name)

    cdef tuple template(self, bytes v, str typ, Py_ssize_t p, str name):
        try:
            return _mux_pattern(self.text(v), typ)
        except ValueError as e:
            raise _Err(str(e), p, name)


cdef object _host_constraint(object ast, str syntax):
    # Which hosts a rule can only match, for the index: (exact keys, wildcard suffix keys), or
    # None when it may match any host. Any one side of an '&&' is a sound constraint; an '||'
    # needs both sides constrained; a negation constrains nothing.
    tag = ast[0]
    if tag == "call":
        name = ast[1]
        if name == "Host" or (syntax == "v2" and name == "HostHeader"):
            exact = set()
            wild = set()
            for v in ast[2]:
                h = _ascii_lower(v)
                if syntax == "v3" and h.startswith(b"*"):
                    # "*.example.com": exactly one label before "example.com" (bucket key);
                    # "*", "**." and other star forms stay in the catch-all list
                    suffix = _host_key(h[2:])
                    if not h.startswith(b"*.") or h.startswith(b"**") or not suffix:
                        return None
                    wild.add(suffix)
                else:
                    exact.add(_host_key(h))
            return (exact, wild)
        return None
    if tag == "and":
        a = _host_constraint(ast[1], syntax)
        b = _host_constraint(ast[2], syntax)
        if a is None:
            return b
        if b is None:
            return a
        if not a[1] and not b[1]:
            return (a[0] & b[0], set())
        return a if len(a[0]) + len(a[1]) <= len(b[0]) + len(b[1]) else b
    if tag == "or":
        a = _host_constraint(ast[1], syntax)
        b = _host_constraint(ast[2], syntax)
        if a is None or b is None:
            return None
        return (a[0] | b[0], a[1] | b[1])
    return None


cdef int _positive_domains(object ast, bint negated, list out) except -1:
    # Traefik ParseDomains: values of Host matchers left un-negated once '!' is pushed down to
    # the leaves (pkg/rules invert), lower-cased, in rule order.
    tag = ast[0]
    if tag == "and" or tag == "or":
        _positive_domains(ast[1], negated, out)
        _positive_domains(ast[2], negated, out)
    elif tag == "not":
        _positive_domains(ast[1], not negated, out)
    elif ast[1] == "Host" and not negated:
        for v in ast[2]:
            out.append(v.decode("utf-8", "surrogateescape").lower())
    return 0


cdef object _parse(str rule, str syntax):
    try:
        src = rule.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RuleSyntaxError("rule is not valid UTF-8", rule, e.start, None)
    try:
        return _Parser(_lex(src), _SPELLINGS[syntax], syntax).parse()
    except _Err as e:
        raise _syntax_error(rule, src, e) from None


cdef object _syntax_error(str rule, bytes src, object e):
    # RuleSyntaxError.pos is a byte offset; the caret line needs a character offset.
    char_pos = len(src[:e.pos].decode("utf-8", "replace"))
    err = RuleSyntaxError(e.message, rule, char_pos, e.matcher)
    err.pos = e.pos
    return err


cpdef Rule compile_rule(str rule, str syntax="v3"):
    """Parse and compile one rule; raises RuleSyntaxError on a rule Traefik refuses."""
    syntax = _check_syntax(syntax)
    ast = _parse(rule, syntax)
    b = _Builder(syntax)
    try:
        root = b.build(ast)
    except _Err as e:
        raise _syntax_error(rule, rule.encode("utf-8"), e) from None
    cdef Rule r = Rule.__new__(Rule)
    r.rule = rule
    r.syntax = syntax
    r.domains = []
    _positive_domains(ast, False, r.domains)
    # Traefik GetRulePriority: len(rule) in bytes, the stars of a "**." host not counting.
    r.priority = len(rule.encode("utf-8"))
    for d in r.domains:
        if d.startswith("**."):
            r.priority -= 2
    r.uses = b.uses
    hosts = _host_constraint(ast, syntax)
    r.host_keys = None if hosts is None else frozenset(hosts[0])
    r.wildcard_keys = None if hosts is None else frozenset(hosts[1])
    r._keep = []
    r._fill(b.nodes, b.matchers, b.nets, root)
    return r


def parse_domains(str rule, syntax="v3"):
    """Hosts named by the rule's un-negated Host matchers, lower-cased (Traefik ParseDomains)."""
    syntax = _check_syntax(syntax)
    out = []
    _positive_domains(_parse(rule, syntax), False, out)
    return out


# ---------------------------------------------------------------------------------------------
# Request side (C). Every helper mirrors one piece of Go's net/http, net/url or Traefik.

cdef inline unsigned char _lower(unsigned char c) noexcept:
    return c + 32 if c >= b'A' and c <= b'Z' else c


cdef inline bint _eq(const unsigned char* a, Py_ssize_t an, const unsigned char* b,
                     Py_ssize_t bn) noexcept:
    return an == bn and (an == 0 or memcmp(a, b, an) == 0)


cdef Py_ssize_t _find(const unsigned char* s, Py_ssize_t n, unsigned char c) noexcept:
    cdef const void* p = memchr(s, c, n) if n > 0 else NULL
    return -1 if p == NULL else <const unsigned char*>p - s


cdef int _split_host_port(const unsigned char* s, Py_ssize_t n, Py_ssize_t* hs,
                          Py_ssize_t* he) noexcept:
    # Go net.SplitHostPort, host part only: 0 and [hs, he) on success, -1 on error.
    cdef Py_ssize_t i = n - 1, end, j, k
    while i >= 0 and s[i] != b':':
        i -= 1
    if i < 0:
        return -1
    if s[0] == b'[':
        end = _find(s, n, b']')
        if end < 0:
            return -1
        if end + 1 == n or end + 1 != i:
            return -1
        hs[0] = 1
        he[0] = end
        j = 1
        k = end + 1
    else:
        if _find(s, i, b':') >= 0:
            return -1
        hs[0] = 0
        he[0] = i
        j = 0
        k = 0
    if _find(s + j, n - j, b'[') >= 0 or _find(s + k, n - k, b']') >= 0:
        return -1
    return 0


cdef int _canonical_host(Req* r) except -1:
    # Traefik requestdecorator: CanonicalDomain(parseHost(req.Host)) = lower(trim(host without
    # port, brackets of a bare IPv6 literal dropped)).
    cdef const unsigned char* s = r.raw_host
    cdef Py_ssize_t n = r.raw_host_n, hs = 0, he = n, i
    if n > 0 and _find(s, n, b':') >= 0:
        if _split_host_port(s, n, &hs, &he) < 0:
            hs, he = 0, n
            if s[0] == b'[' and s[n - 1] == b']':
                hs, he = 1, n - 1
    while hs < he and s[hs] in b' \t\n\v\f\r':
        hs += 1
    while he > hs and s[he - 1] in b' \t\n\v\f\r':
        he -= 1
    n = he - hs
    if n <= 256:
        r.host = r.hostbuf
    else:
        r.hostheap = <unsigned char*>PyMem_Malloc(n)
        if r.hostheap == NULL:
            raise MemoryError()
        r.host = r.hostheap
    for i in range(n):
        r.host[i] = _lower(s[hs + i])
    r.host_n = n
    return 0


cdef inline bint _path_should_escape(unsigned char c) noexcept:
    # Go net/url shouldEscape(c, encodePath)
    if (c >= b'a' and c <= b'z') or (c >= b'A' and c <= b'Z') or (c >= b'0' and c <= b'9'):
        return False
    if c == b'-' or c == b'_' or c == b'.' or c == b'~':
        return False
    if c == b'$' or c == b'&' or c == b'+' or c == b',' or c == b'/' or c == b':' or \
            c == b';' or c == b'=' or c == b'@':
        return False
    return True


cdef inline bint _path_valid_encoded(unsigned char c) noexcept:
    # Go net/url validEncoded(s, encodePath), one byte
    if c in b"!$&'()*+,;=:@[]%":
        return True
    return not _path_should_escape(c)


cdef inline bint _reserved_escape(unsigned char a, unsigned char b) noexcept:
    # Traefik mux.go reservedCharacters: %XX (upper-case hex only) kept encoded.
    if a == b'2':
        return b in b"F3461789ABC5"   # %2F %23 %24 %26 %21 %27 %28 %29 %2A %2B %2C %25
    if a == b'3':
        return b in b"AFBD"           # %3A %3F %3B %3D
    if a == b'5':
        return b == b'B' or b == b'D'
    if a == b'4':
        return b == b'0'
    return False


cdef const char* _HEX = b"0123456789ABCDEF"


cdef int _routing_path(Req* r) except -1:
    # Traefik withRoutingPath over Go's URL.EscapedPath(): reserved escapes stay encoded, the
    # rest is decoded. A path Go's url.Parse refuses (bad %-escape) gets 400 from Traefik.
    cdef const unsigned char* p = r.path
    cdef Py_ssize_t n = r.path_n, i, o, m
    cdef bint valid = True, pct = False
    cdef int a, b
    cdef unsigned char c
    cdef unsigned char* dec
    cdef unsigned char* esc
    for i in range(n):
        c = p[i]
        if c == b'%':
            pct = True
            if i + 2 >= n:
                r.rpath_state = -1
                return 0
            if _hexval(p[i + 1]) < 0 or _hexval(p[i + 2]) < 0:
                r.rpath_state = -1
                return 0
        elif not _path_valid_encoded(c):
            valid = False
    if valid and not pct:
        r.rpath = p
        r.rpath_n = n
        r.rpath_state = 1
        return 0
    # Worst case: EscapedPath re-encodes every byte as %XX (3x).
    r.rpath_heap = <unsigned char*>PyMem_Malloc(4 * n + 1)
    if r.rpath_heap == NULL:
        raise MemoryError()
    esc = r.rpath_heap + n
    if valid:
        memcpy(esc, p, n)
        m = n
    else:
        # EscapedPath = escape(unescape(raw), encodePath)
        dec = r.rpath_heap
        o = 0
        i = 0
        while i < n:
            if p[i] == b'%':
                dec[o] = <unsigned char>(_hexval(p[i + 1]) * 16 + _hexval(p[i + 2]))
                i += 3
            else:
                dec[o] = p[i]
                i += 1
            o += 1
        m = 0
        for i in range(o):
            c = dec[i]
            if _path_should_escape(c):
                esc[m] = b'%'
                esc[m + 1] = _HEX[c >> 4]
                esc[m + 2] = _HEX[c & 15]
                m += 3
            else:
                esc[m] = c
                m += 1
    # decode the escapes that are not reserved (into the front of the buffer)
    dec = r.rpath_heap
    o = 0
    i = 0
    while i < m:
        if esc[i] == b'%':
            if i + 2 >= m:
                r.rpath_state = -1
                return 0
            if _reserved_escape(esc[i + 1], esc[i + 2]):
                dec[o] = b'%'
                dec[o + 1] = esc[i + 1]
                dec[o + 2] = esc[i + 2]
                o += 3
            else:
                dec[o] = <unsigned char>(_hexval(esc[i + 1]) * 16 + _hexval(esc[i + 2]))
                o += 1
            i += 3
        else:
            dec[o] = esc[i]
            o += 1
            i += 1
    r.rpath = dec
    r.rpath_n = o
    r.rpath_state = 1
    return 0


cdef Py_ssize_t _query_unescape(const unsigned char* s, Py_ssize_t n,
                                unsigned char* out) noexcept:
    # Go url.QueryUnescape: '+' is a space, %XX a byte; -1 on a bad escape.
    cdef Py_ssize_t i = 0, o = 0
    cdef int a, b
    while i < n:
        if s[i] == b'%':
            if i + 2 >= n:
                return -1
            a = _hexval(s[i + 1])
            b = _hexval(s[i + 2])
            if a < 0 or b < 0:
                return -1
            out[o] = <unsigned char>(a * 16 + b)
            i += 3
        elif s[i] == b'+':
            out[o] = b' '
            i += 1
        else:
            out[o] = s[i]
            i += 1
        o += 1
    return o


cdef int _parse_query(Req* r) except -1:
    # Go url.ParseQuery, as req.URL.Query() uses it: split on '&', a piece holding ';' is
    # dropped, key and value split on the first '=' and form-decoded; a bad escape drops the
    # piece.
    cdef const unsigned char* q = r.query
    cdef Py_ssize_t n = r.query_n, i = 0, j, e, kn, vn, o = 0, count = 1
    r.q_state = 1
    if n == 0:
        return 0
    for j in range(n):
        if q[j] == b'&':
            count += 1
    r.qbuf = <unsigned char*>PyMem_Malloc(n + 1)
    r.qpairs = <QPair*>PyMem_Malloc(count * sizeof(QPair))
    if r.qbuf == NULL or r.qpairs == NULL:
        raise MemoryError()
    while i <= n:
        j = i
        while j < n and q[j] != b'&':
            j += 1
        if j > i and _find(q + i, j - i, b';') < 0:
            e = i
            while e < j and q[e] != b'=':
                e += 1
            kn = _query_unescape(q + i, e - i, r.qbuf + o)
            if kn >= 0:
                if e < j:
                    vn = _query_unescape(q + e + 1, j - e - 1, r.qbuf + o + kn)
                else:
                    vn = 0
                if vn >= 0:
                    r.qpairs[r.n_qpairs].k = o
                    r.qpairs[r.n_qpairs].kn = kn
                    r.qpairs[r.n_qpairs].v = o + kn
                    r.qpairs[r.n_qpairs].vn = vn
                    r.n_qpairs += 1
                    o += kn + vn
        i = j + 1
    return 0


cdef int _client_ip(Req* r) noexcept:
    # Traefik ClientIP: netip.ParseAddr(peer IP) -> 16 bytes; 1 ok, -1 unparsable.
    cdef char buf[64]
    cdef Py_ssize_t n = r.ip_text_n, z
    cdef unsigned char v4[4]
    r.ip_state = -1
    if n <= 0 or n >= 64:
        return -1
    memcpy(buf, r.ip_text, n)
    buf[n] = 0
    if _find(r.ip_text, n, b':') >= 0:
        z = _find(r.ip_text, n, b'%')   # an IPv6 zone is allowed and ignored
        if z == 0:
            return -1
        if z > 0:
            buf[z] = 0
        if inet_pton(AF_INET6, buf, r.ip) != 1:
            return -1
    else:
        if inet_pton(AF_INET, buf, v4) != 1:
            return -1
        memset(r.ip, 0, 10)
        r.ip[10] = 0xff
        r.ip[11] = 0xff
        memcpy(r.ip + 12, v4, 4)
    r.ip_state = 1
    return 1


cdef void _req_release(Req* r) noexcept:
    if r.hostheap != NULL:
        PyMem_Free(r.hostheap)
    if r.rpath_heap != NULL:
        PyMem_Free(r.rpath_heap)
    if r.qbuf != NULL:
        PyMem_Free(r.qbuf)
    if r.qpairs != NULL:
        PyMem_Free(r.qpairs)
    Py_XDECREF(r.host_obj)
    Py_XDECREF(r.raw_host_obj)
    Py_XDECREF(r.rpath_obj)


cdef inline bint _is_scheme_char(unsigned char c, bint first) noexcept:
    if (c >= b'a' and c <= b'z') or (c >= b'A' and c <= b'Z'):
        return True
    return not first and ((c >= b'0' and c <= b'9') or c == b'+' or c == b'-' or c == b'.')


cdef int _req_init(Req* r, bytes method, bytes host, bytes path, bytes query, list headers,
                   bytes remote_ip) except -1:
    cdef const unsigned char* p
    cdef Py_ssize_t n, i, a, at, n_at
    memset(r, 0, sizeof(Req))
    if method is not None:
        r.method = <const unsigned char*>PyBytes_AS_STRING(method)
        r.method_n = PyBytes_GET_SIZE(method)
    if host is not None:
        r.raw_host = <const unsigned char*>PyBytes_AS_STRING(host)
        r.raw_host_n = PyBytes_GET_SIZE(host)
    if path is not None:
        p = <const unsigned char*>PyBytes_AS_STRING(path)
        n = PyBytes_GET_SIZE(path)
        r.path = p
        r.path_n = n
        r.path_src = <PyObject*>path
        if n > 0 and p[0] != b'/' and _is_scheme_char(p[0], True):
            # absolute-form target (RFC 9112 §3.2.2): Go's req.Host is the URL's host, which
            # wins over the Host header; the path is what follows the authority.
            i = 1
            while i < n and _is_scheme_char(p[i], False):
                i += 1
            if i + 3 <= n and p[i] == b':' and p[i + 1] == b'/' and p[i + 2] == b'/':
                a = i + 3
                i = a
                while i < n and p[i] != b'/':
                    i += 1
                at = a
                for n_at in range(a, i):
                    if p[n_at] == b'@':
                        at = n_at + 1   # userinfo is not part of URL.Host
                if i > at:
                    r.raw_host = p + at
                    r.raw_host_n = i - at
                r.path = p + i
                r.path_n = n - i
                r.path_src = NULL
    if query is not None:
        r.query = <const unsigned char*>PyBytes_AS_STRING(query)
        r.query_n = PyBytes_GET_SIZE(query)
    if headers is not None:
        r.headers = <PyObject*>headers
    if remote_ip is not None:
        r.ip_text = <const unsigned char*>PyBytes_AS_STRING(remote_ip)
        r.ip_text_n = PyBytes_GET_SIZE(remote_ip)
    _canonical_host(r)
    return 0


cdef bint _dmhe(const unsigned char* d, Py_ssize_t dn, const unsigned char* e,
                Py_ssize_t en) noexcept:
    # Traefik muxer.DomainMatchHostExpression (domain already lower-case, expression too)
    cdef Py_ssize_t sn, i
    if en >= 3 and e[0] == b'*' and e[1] == b'*' and e[2] == b'.':
        # "**.example.com": one or more labels before the suffix
        sn = en - 3
        return dn > sn + 1 and memcmp(d + dn - sn - 1, e + 2, sn + 1) == 0
    if en >= 1 and e[0] == b'*':
        # "*.example.com": the first label replaced by '*' must give the expression
        i = _find(d, dn, b'.')
        if i < 0:
            return en == 1
        return _eq(d + i, dn - i, e + 1, en - 1)
    return _eq(d, dn, e, en)


cdef bint _host_eq(const unsigned char* h, Py_ssize_t hn, const unsigned char* e,
                   Py_ssize_t en, bint v2) noexcept:
    # Traefik matcher.go host() (v3: the expression, domain-matching wildcards) and
    # matcher_v2.go hostV2() (exact); both then retry with a trailing period on either side.
    if hn == 0:
        return False
    if _eq(h, hn, e, en) if v2 else _dmhe(h, hn, e, en):
        return True
    if en > 0 and e[en - 1] == b'.':
        if _eq(h, hn, e, en - 1) if v2 else _dmhe(h, hn, e, en - 1):
            return True
    if h[hn - 1] == b'.':
        if _eq(h, hn - 1, e, en) if v2 else _dmhe(h, hn - 1, e, en):
            return True
    return False


cdef inline int _search(PyObject* fn, object text) except -1:
    spans = (<object>fn)(_UNANCHORED, text, 0, PyBytes_GET_SIZE(text))
    return (<tuple>(<list>spans)[0])[0] != -1


cdef object _host_obj(Req* r):
    if r.host_obj == NULL:
        o = PyBytes_FromStringAndSize(<char*>r.host, r.host_n)
        Py_INCREF(o)
        r.host_obj = <PyObject*>o
    return <object>r.host_obj


cdef object _rpath_obj(Req* r):
    if r.rpath_obj == NULL:
        if r.path_src != NULL and r.rpath == r.path and r.rpath_n == r.path_n:
            o = <object>r.path_src
        else:
            o = PyBytes_FromStringAndSize(<char*>r.rpath, r.rpath_n)
        Py_INCREF(o)
        r.rpath_obj = <PyObject*>o
    return <object>r.rpath_obj


cdef inline void _trim_ows(const unsigned char** s, Py_ssize_t* n) noexcept:
    # Go's textproto trims spaces and tabs around a header value.
    while n[0] > 0 and (s[0][0] == b' ' or s[0][0] == b'\t'):
        s[0] += 1
        n[0] -= 1
    while n[0] > 0 and (s[0][n[0] - 1] == b' ' or s[0][n[0] - 1] == b'\t'):
        n[0] -= 1


cdef bint _name_is(const unsigned char* s, Py_ssize_t n, const unsigned char* lk,
                   Py_ssize_t kn) noexcept:
    cdef Py_ssize_t i
    if n != kn:
        return False
    for i in range(n):
        if _lower(s[i]) != lk[i]:
            return False
    return True


cdef int _v2_query_first(Req* r, const unsigned char* key, Py_ssize_t kn,
                         unsigned char* buf, Py_ssize_t* vstart, Py_ssize_t* vn) except -1:
    # gorilla/mux findFirstQueryKey: pieces split on '&' or ';', first whose decoded key is
    # key; its decoded value goes to buf[vstart:vstart+vn]. 1 found, 0 not.
    cdef const unsigned char* q = r.query
    cdef Py_ssize_t n = r.query_n, i = 0, j, e, dk, dv
    while i < n:
        j = i
        while j < n and q[j] != b'&' and q[j] != b';':
            j += 1
        if j > i:
            e = i
            while e < j and q[e] != b'=':
                e += 1
            if e - i >= kn:
                dk = _query_unescape(q + i, e - i, buf)
                if dk >= 0 and _eq(buf, dk, key, kn):
                    dv = _query_unescape(q + e + 1, j - e - 1, buf + dk) if e < j else 0
                    if dv >= 0:
                        vstart[0] = dk
                        vn[0] = dv
                        return 1
        i = j + 1
    return 0


@cython.final
cdef class Rule:
    """A compiled rule: ``.priority`` is Traefik's default priority; ``.matches(...)`` tests one
    request (see pyroute.rules)."""

    def __dealloc__(self):
        PyMem_Free(self.nodes)
        PyMem_Free(self.matchers)
        PyMem_Free(self.nets)

    cdef int _fill(self, list nodes, list matchers, list nets, int root) except -1:
        cdef int i
        cdef Matcher* m
        self.n_nodes = len(nodes)
        self.nodes = <Node*>PyMem_Malloc(max(1, self.n_nodes) * sizeof(Node))
        self.n_matchers = len(matchers)
        self.matchers = <Matcher*>PyMem_Malloc(max(1, self.n_matchers) * sizeof(Matcher))
        self.n_nets = len(nets)
        self.nets = <IPNet*>PyMem_Malloc(max(1, self.n_nets) * sizeof(IPNet))
        if self.nodes == NULL or self.matchers == NULL or self.nets == NULL:
            raise MemoryError()
        for i, (kind, a, bb) in enumerate(nodes):
            self.nodes[i].kind = kind
            self.nodes[i].a = a
            self.nodes[i].b = bb
        self.root = root
        for i, (kind, flags, s1, s2, regex, ip_start, ip_count) in enumerate(matchers):
            m = &self.matchers[i]
            memset(m, 0, sizeof(Matcher))
            m.kind = kind
            m.flags = flags
            if s1 is not None:
                self._keep.append(s1)
                m.s1 = <const unsigned char*>PyBytes_AS_STRING(s1)
                m.n1 = len(s1)
            if s2 is not None:
                self._keep.append(s2)
                m.s2 = <const unsigned char*>PyBytes_AS_STRING(s2)
                m.n2 = len(s2)
            if regex is not None:
                self._keep.append(regex)
                m.regex = <PyObject*>regex
            m.ip_start = ip_start
            m.ip_count = ip_count
        for i, (kind, ip, mask) in enumerate(nets):
            self.nets[i].kind = kind
            memcpy(self.nets[i].ip, <const unsigned char*>PyBytes_AS_STRING(ip), 16)
            memcpy(self.nets[i].mask, <const unsigned char*>PyBytes_AS_STRING(mask), 16)

    cdef int eval_node(self, int i, Req* r) except -1:
        cdef Node* nd = &self.nodes[i]
        cdef int x
        if nd.kind == N_LEAF:
            return self.eval_matcher(&self.matchers[nd.a], r)
        if nd.kind == N_AND:
            x = self.eval_node(nd.a, r)
            return x and self.eval_node(nd.b, r)
        if nd.kind == N_OR:
            x = self.eval_node(nd.a, r)
            return x or self.eval_node(nd.b, r)
        return not self.eval_node(nd.a, r)

    cdef int eval_matcher(self, Matcher* m, Req* r) except -1:
        cdef int k = m.kind
        cdef Py_ssize_t i, n, vn, vs, hs, he
        cdef const unsigned char* v
        cdef PyObject* item
        cdef IPNet* net
        cdef bint is4
        cdef int j
        cdef unsigned char* buf
        if k == M_HOST:
            return _host_eq(r.host, r.host_n, m.s1, m.n1, False)
        if k == M_HOST_ANY:
            return 1
        if k == M_HOST_V2:
            return _host_eq(r.host, r.host_n, m.s1, m.n1, True)
        if k == M_PATH or k == M_PATH_PREFIX or k == M_PATH_REGEXP:
            if r.rpath_state == 0:
                _routing_path(r)
            if r.rpath_state < 0:
                return 0
            if k == M_PATH:
                return _eq(r.rpath, r.rpath_n, m.s1, m.n1)
            if k == M_PATH_PREFIX:
                return r.rpath_n >= m.n1 and memcmp(r.rpath, m.s1, m.n1) == 0
            return _search(m.regex, _rpath_obj(r))
        if k == M_METHOD:
            return _eq(r.method, r.method_n, m.s1, m.n1)
        if k == M_HEADER or k == M_HEADER_REGEXP:
            if r.headers == NULL:
                return 0
            n = PyList_GET_SIZE(<object>r.headers)
            for i in range(n):
                item = PyList_GET_ITEM(<object>r.headers, i)
                if type(<object>item) is not tuple or PyTuple_GET_SIZE(<object>item) != 2:
                    raise TypeError("headers must be (bytes, bytes) tuples")
                name = <object>PyTuple_GET_ITEM(<object>item, 0)
                value = <object>PyTuple_GET_ITEM(<object>item, 1)
                if type(name) is not bytes or type(value) is not bytes:
                    raise TypeError("headers must be (bytes, bytes) tuples")
                if not _name_is(<const unsigned char*>PyBytes_AS_STRING(name),
                                PyBytes_GET_SIZE(name), m.s1, m.n1):
                    continue
                v = <const unsigned char*>PyBytes_AS_STRING(value)
                vn = PyBytes_GET_SIZE(value)
                _trim_ows(&v, &vn)
                if k == M_HEADER:
                    if _eq(v, vn, m.s2, m.n2):
                        return 1
                else:
                    if vn != PyBytes_GET_SIZE(value):
                        value = PyBytes_FromStringAndSize(<char*>v, vn)
                    if _search(m.regex, value):
                        return 1
            return 0
        if k == M_QUERY or k == M_QUERY_REGEXP:
            if r.q_state == 0:
                _parse_query(r)
            for i in range(r.n_qpairs):
                if not _eq(r.qbuf + r.qpairs[i].k, r.qpairs[i].kn, m.s1, m.n1):
                    continue
                if k == M_QUERY:
                    if _eq(r.qbuf + r.qpairs[i].v, r.qpairs[i].vn, m.s2, m.n2):
                        return 1
                elif _search(m.regex, PyBytes_FromStringAndSize(
                        <char*>r.qbuf + r.qpairs[i].v, r.qpairs[i].vn)):
                    return 1
            return 0
        if k == M_CLIENT_IP:
            if r.ip_state == 0:
                _client_ip(r)
            if r.ip_state < 0:
                return 0
            # Go net.IP.To4: IPv4 and IPv4-mapped IPv6 peers compare as IPv4
            is4 = True
            for j in range(10):
                if r.ip[j] != 0:
                    is4 = False
            is4 = is4 and r.ip[10] == 0xff and r.ip[11] == 0xff
            for i in range(m.ip_start, m.ip_start + m.ip_count):
                net = &self.nets[i]
                if net.kind == 0:
                    if memcmp(net.ip, r.ip, 16) == 0:
                        return 1
                elif net.kind == 4:
                    if is4:
                        for j in range(4):
                            if (r.ip[12 + j] & net.mask[j]) != net.ip[j]:
                                break
                        else:
                            return 1
                elif not is4:
                    for j in range(16):
                        if (r.ip[j] & net.mask[j]) != net.ip[j]:
                            break
                    else:
                        return 1
            return 0
        if k == M_HOST_REGEXP:
            if m.flags & F_EMPTY_MATCHES:
                return 1
            return _search(m.regex, _host_obj(r))
        if k == M_HOST_RAW_REGEXP:
            # gorilla/mux routeRegexp.Match on getHost(req), port cut at the first ':'
            n = r.raw_host_n
            if m.flags & F_STRIP_PORT:
                i = _find(r.raw_host, n, b':')
                if i >= 0:
                    n = i
            return _search(m.regex, PyBytes_FromStringAndSize(<char*>r.raw_host, n))
        if k == M_QUERY_V2_EQ or k == M_QUERY_V2_ANY or k == M_QUERY_V2_REGEXP:
            if r.query_n == 0:
                return 0
            buf = <unsigned char*>PyMem_Malloc(r.query_n + 1)
            if buf == NULL:
                raise MemoryError()
            try:
                vs = vn = 0
                if not _v2_query_first(r, m.s1, m.n1, buf, &vs, &vn):
                    return 0
                if k == M_QUERY_V2_EQ:
                    return _eq(buf + vs, vn, m.s2, m.n2)
                if k == M_QUERY_V2_ANY:
                    # `^key=.*$`: '.' does not match a newline
                    return vn == 0 or memchr(buf + vs, b'\n', vn) == NULL
                return _search(m.regex, PyBytes_FromStringAndSize(<char*>m.s1, m.n1) + b"=" +
                               PyBytes_FromStringAndSize(<char*>buf + vs, vn))
            finally:
                PyMem_Free(buf)
        return 0   # M_NEVER

    def matches(self, method="GET", host=None, path="/", query="", headers=None,
                remote_addr=None, tls=False):
        """Whether this rule matches the request (arguments as in RouteTable.match)."""
        cdef Req req
        args = _request_args(method, host, path, query, headers, remote_addr)
        _req_init(&req, args[0], args[1], args[2], args[3], args[4], args[5])
        try:
            return self.eval_node(self.root, &req) == 1
        finally:
            _req_release(&req)

    @property
    def uses_headers(self):
        return bool(self.uses & U_HEADERS)

    @property
    def uses_query(self):
        return bool(self.uses & U_QUERY)

    @property
    def uses_client_ip(self):
        return bool(self.uses & U_CLIENT_IP)

    def __repr__(self):
        return "Rule(%r, syntax=%r, priority=%d)" % (self.rule, self.syntax, self.priority)


cdef bytes _b(object s):
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    return (<str>s).encode("utf-8", "surrogateescape")


cdef tuple _request_args(method, host, path, query, headers, remote_addr):
    # The Python-facing API takes str (or bytes); the engine wants bytes. remote_addr is
    # "ip:port" as Go's req.RemoteAddr: Traefik's RemoteAddrStrategy takes the host part, or the
    # whole string when it does not split.
    cdef Py_ssize_t hs = 0, he = 0
    hl = None
    if headers is not None:
        hl = [(_b(k), _b(v)) for k, v in headers]
    ip = None
    if remote_addr is not None:
        ra = _b(remote_addr)
        if _split_host_port(<const unsigned char*>PyBytes_AS_STRING(ra), len(ra), &hs, &he) == 0:
            ip = ra[hs:he]
        else:
            ip = ra
    return (_b(method), _b(host), _b(path), _b(query) if query is not None else b"", hl, ip)


# ---------------------------------------------------------------------------------------------
# The route table.

cdef unsigned long long _hash(const unsigned char* s, Py_ssize_t n) noexcept:
    # FNV-1a, 64 bits
    cdef unsigned long long h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h


cdef int _cmp_int(const void* a, const void* b) noexcept nogil:
    return (<const int*>a)[0] - (<const int*>b)[0]


cdef Bucket* _buckets_alloc(Py_ssize_t n_keys, Py_ssize_t* cap_out) except NULL:
    # Open addressing, load factor <= 1/2, zeroed (an empty slot has key NULL)
    cdef Py_ssize_t cap = 8
    cdef Bucket* slots
    while cap < 2 * n_keys + 8:
        cap *= 2
    slots = <Bucket*>PyMem_Malloc(cap * sizeof(Bucket))
    if slots == NULL:
        raise MemoryError()
    memset(slots, 0, cap * sizeof(Bucket))
    cap_out[0] = cap
    return slots


cdef int _buckets_fill(Bucket* slots, Py_ssize_t cap, list items, Py_ssize_t start,
                       Py_ssize_t end, list keep, const int* rank_of) except -1:
    # items[start:end] ((key, constructor indices) pairs) into the slots; keys owned by keep;
    # rank_of maps the indices to ranks, each bucket's ranks sorted ascending
    cdef Py_ssize_t j, k
    cdef unsigned long long h
    cdef Bucket* bk
    cdef int i
    for k in range(start, end):
        key, ranks = <tuple>items[k]
        keep.append(key)
        h = _hash(<const unsigned char*>PyBytes_AS_STRING(key), len(key))
        j = h & (cap - 1)
        while slots[j].key != NULL:
            j = (j + 1) & (cap - 1)
        bk = &slots[j]
        bk.key = <const unsigned char*>PyBytes_AS_STRING(key)
        bk.key_n = len(key)
        bk.hash = h
        bk.n = len(ranks)
        bk.ranks = <int*>PyMem_Malloc(len(ranks) * sizeof(int))
        if bk.ranks == NULL:
            raise MemoryError()
        for i, index in enumerate(ranks):
            bk.ranks[i] = rank_of[<int>index]
        if bk.n > 1:
            qsort(bk.ranks, bk.n, sizeof(int), _cmp_int)
    return 0


def _merge_steps(list a, list b, list out, Py_ssize_t step):
    # Two sorted runs of a staged table's rows into ``out``, ``step`` rows a step (a
    # generator): merging 5,000 and 5,000 rows at once is ~1-3 ms of tuple comparisons.
    # No two rows compare equal (each ends with its constructor index).
    cdef Py_ssize_t i = 0, j = 0, na = len(a), nb = len(b), k
    while i < na and j < nb:
        k = 0
        while k < step and i < na and j < nb:
            if b[j] < a[i]:
                out.append(b[j])
                j += 1
            else:
                out.append(a[i])
                i += 1
            k += 1
        yield
    out.extend(a[i:])
    out.extend(b[j:])


cdef void _buckets_free(Bucket* slots, Py_ssize_t cap) noexcept:
    cdef Py_ssize_t j
    if slots != NULL:
        for j in range(cap):
            PyMem_Free(slots[j].ranks)
        PyMem_Free(slots)


cdef Bucket* _buckets_find(Bucket* slots, Py_ssize_t cap, const unsigned char* k,
                           Py_ssize_t kn) noexcept:
    cdef unsigned long long hv = _hash(k, kn)
    cdef Py_ssize_t j = hv & (cap - 1)
    while slots[j].key != NULL:
        if slots[j].hash == hv and _eq(slots[j].key, slots[j].key_n, k, kn):
            return &slots[j]
        j = (j + 1) & (cap - 1)
    return NULL


FINISH_STEP = 1000       # rows merged (or ranked, or host keys indexed) per finish step


@cython.final
cdef class RouteTable:
    """Routers of one entry point (and one of TLS / non-TLS), matched in Traefik's order."""

    def __cinit__(self):
        self.by_rank = NULL
        self.index_of_rank = NULL
        self.slots = NULL
        self.wslots = NULL
        self.catch_all = NULL

    def __init__(self, routes=(), syntax="v3", index=True, finish=True):
        """routes: (name, rule, priority) or (name, rule, priority, syntax) tuples, the rule a
        text or a Rule from compile_rule (compiled with its own syntax); priority 0 means
        Traefik's default. index=False puts every route in the catch-all list (a linear
        scan in priority order: the benchmarks' peer).

        finish=False: a table built in stages — ``add`` more routes, then ``finish`` once,
        before any lookup (pyroute.proxy.snapshot builds a reload's tables in slices across
        the worker's loop turns, so no turn pays for 10,000 routes at once)."""
        if self.by_rank != NULL or self._entries is not None:
            raise TypeError("RouteTable is immutable: build a new one")
        self._default_syntax = _check_syntax(syntax)
        self._index = index
        self.names = []
        self.priorities = []
        self._rules = []
        self._keys = []
        self._entries = []
        self._catch_idx = []
        self._bidx = {}
        self._wbidx = {}
        self.add(routes)
        if finish:
            self.finish()

    def add(self, routes):
        """More routes for a table made with finish=False (see __init__)."""
        cdef int i
        cdef Rule rule
        if self._entries is None:
            raise TypeError("RouteTable is immutable: build a new one")
        default_syntax = self._default_syntax
        entries = []                  # this call's rows: one sorted run of self._entries
        i = len(self.names)
        for route in routes:
            if len(route) == 4:
                name, text, priority, rsyntax = route
                rsyntax = _check_syntax(rsyntax) if rsyntax else default_syntax
            else:
                name, text, priority = route
                rsyntax = default_syntax
            if isinstance(text, Rule):
                # compiled ahead (pyroute.proxy.snapshot compiles a reload's rules in slices
                # across loop turns): the table only sorts and indexes it
                rule = <Rule>text
            else:
                try:
                    rule = compile_rule(text, rsyntax)
                except RuleSyntaxError as e:
                    e.router = name
                    raise
            priority = int(priority or 0)
            if priority == 0:
                priority = rule.priority   # Traefik: priority 0 means "use the default"
            if priority > MAX_USER_PRIORITY and not str(name).endswith("@internal"):
                # (Traefik's internal routers, e.g. entry point redirections, sit above)
                raise ValueError("router %s: the router priority %d exceeds the max "
                                 "user-defined priority %d" % (name, priority, MAX_USER_PRIORITY))
            self.names.append(name)
            self.priorities.append(priority)
            self._rules.append(rule)
            self.uses |= rule.uses
            # Traefik sorts by priority only (sort.Sort over routers taken from a Go map, so
            # equal priorities come out in no fixed order); pyroute breaks such ties by router
            # name, then by position, to stay deterministic.
            entries.append((-priority, str(name), i))
            # the host index by constructor index here, turned into ranks by finish(): the
            # per-route work is done as routes are added, finish() only sorts and maps
            if rule.host_keys is None or not self._index:
                self._catch_idx.append(i)
            else:
                for key in rule.host_keys:
                    self._bidx.setdefault(key, []).append(i)
                for key in rule.wildcard_keys:
                    self._wbidx.setdefault(key, []).append(i)
            i += 1
        if entries:
            entries.sort()
            self._entries.append(entries)

    def finish(self):
        """Sort and index what was added; the table is immutable from here on."""
        for _ in self.finish_steps():
            pass

    def finish_steps(self, Py_ssize_t step=FINISH_STEP):
        """``finish`` as a generator, ``step`` rows (or host keys) a step: the runs ``add``
        sorted merged, the rank map, the host index. At 10,000 routes finish() is ~10 ms in
        one piece; a worker's reload spreads it over its loop turns (issue #11). The table
        must not be used before the generator is exhausted."""
        cdef int i, rank, k
        cdef Py_ssize_t n, start
        cdef int* rank_of = NULL
        cdef Bucket* slots
        if self._entries is None:
            raise TypeError("RouteTable is immutable: build a new one")
        runs = self._entries
        self._entries = None
        while len(runs) > 1:
            merged = []
            for k in range(0, len(runs) - 1, 2):
                out = []
                yield from _merge_steps(runs[k], runs[k + 1], out, step)
                merged.append(out)
            if len(runs) % 2:
                merged.append(runs[len(runs) - 1])
            runs = merged
        entries = runs[0] if runs else []
        n = len(entries)
        self.needs_headers = bool(self.uses & U_HEADERS)
        self.needs_query = bool(self.uses & U_QUERY)
        self.needs_client_ip = bool(self.uses & U_CLIENT_IP)
        self.by_rank = <PyObject**>PyMem_Malloc(max(1, n) * sizeof(PyObject*))
        self.index_of_rank = <int*>PyMem_Malloc(max(1, n) * sizeof(int))
        self.catch_all = <int*>PyMem_Malloc(max(1, n) * sizeof(int))
        rank_of = <int*>PyMem_Malloc(max(1, n) * sizeof(int))
        if self.by_rank == NULL or self.index_of_rank == NULL or self.catch_all == NULL or \
                rank_of == NULL:
            PyMem_Free(rank_of)
            raise MemoryError()
        try:
            rules = self._rules
            for rank in range(n):
                i = <int>(<tuple>entries[rank])[2]
                self.by_rank[rank] = <PyObject*>rules[i]
                self.index_of_rank[rank] = i
                rank_of[i] = rank
                if rank % step == step - 1:
                    yield
            runs = None
            while entries:            # the rows let go a step at a time (10,000 tuples)
                del entries[-step:]
                yield
            for k in range(len(self._catch_idx)):
                self.catch_all[k] = rank_of[<int>self._catch_idx[k]]
            self.n_catch_all = len(self._catch_idx)
            if self.n_catch_all > 1:
                qsort(self.catch_all, self.n_catch_all, sizeof(int), _cmp_int)
            yield
            self._catch_idx = None
            # the host indexes, ``step`` keys a step (freed by __dealloc__ if abandoned); the
            # indices lists let go a step at a time too (10,000 of them at once: ~2 ms)
            for which in range(2):
                if which == 0:
                    items = list(self._bidx.items())
                    self._bidx = None
                    self.slots = slots = _buckets_alloc(len(items), &self.cap)
                else:
                    items = list(self._wbidx.items())
                    self._wbidx = None
                    self.wslots = slots = _buckets_alloc(len(items), &self.wcap)
                while items:
                    part = items[-step:]
                    del items[-step:]
                    _buckets_fill(slots, self.wcap if which else self.cap, part, 0,
                                  len(part), self._keys, rank_of)
                    part = None
                    yield
        finally:
            PyMem_Free(rank_of)
        self.n = n                    # last: what lookups read

    def __dealloc__(self):
        _buckets_free(self.slots, self.cap)
        _buckets_free(self.wslots, self.wcap)
        PyMem_Free(self.by_rank)
        PyMem_Free(self.index_of_rank)
        PyMem_Free(self.catch_all)

    def __len__(self):
        return self.n

    cdef int _walk(self, Req* r, list out) except -2:
        # First matching rank (out is None), or every matching rank appended to out; -1: none.
        # Candidates: the exact-host bucket, the wildcard bucket of the host's parent domain
        # and the catch-all list, merged by rank (a rule in two lists advances both at once,
        # so it is evaluated once).
        cdef const unsigned char* h = r.host
        cdef Py_ssize_t hn = r.host_n, d
        cdef Bucket* bk
        cdef int* b = NULL
        cdef int* w = NULL
        cdef int* c = self.catch_all
        cdef int nb = 0, nw = 0, nc = self.n_catch_all, ib = 0, iw = 0, ic = 0
        cdef int rank, hit
        while hn > 0 and h[hn - 1] == b'.':
            hn -= 1
        if hn > 0:
            bk = _buckets_find(self.slots, self.cap, h, hn)
            if bk != NULL:
                b = bk.ranks
                nb = bk.n
            d = _find(h, hn, b'.')
            if d >= 0 and d + 1 < hn:
                bk = _buckets_find(self.wslots, self.wcap, h + d + 1, hn - d - 1)
                if bk != NULL:
                    w = bk.ranks
                    nw = bk.n
        while ib < nb or iw < nw or ic < nc:
            rank = self.n
            if ib < nb:
                rank = b[ib]
            if iw < nw and w[iw] < rank:
                rank = w[iw]
            if ic < nc and c[ic] < rank:
                rank = c[ic]
            if ib < nb and b[ib] == rank:
                ib += 1
            if iw < nw and w[iw] == rank:
                iw += 1
            if ic < nc and c[ic] == rank:
                ic += 1
            hit = (<Rule>self.by_rank[rank]).eval_node((<Rule>self.by_rank[rank]).root, r)
            if hit:
                if out is None:
                    return rank
                out.append(rank)
        return -1

    cpdef int route(self, bytes method, bytes host, bytes path, bytes query, list headers,
                    bytes remote_ip, bint tls) except -3:
        """Index (constructor order) of the router the request reaches, -1 for none (404),
        -2 for a path with a bad percent-encoding (Traefik answers 400).

        host is the raw Host value (or None), path/query raw from the request target (path may
        be absolute-form), headers a list of (name, value) bytes tuples or None, remote_ip the
        peer IP as text. tls is accepted for symmetry: TLS and plain routers live in separate
        tables."""
        cdef Req req
        cdef int rank
        _req_init(&req, method, host, path, query, headers, remote_ip)
        try:
            rank = self._walk(&req, None)
            if rank < 0:
                if req.rpath_state < 0:
                    return -2
                return -1
            return self.index_of_rank[rank]
        finally:
            _req_release(&req)

    def match(self, method="GET", host=None, path="/", query="", headers=None,
              remote_addr=None, tls=False):
        """Name of the router the request reaches, or None."""
        cdef Req req
        cdef int rank
        args = _request_args(method, host, path, query, headers, remote_addr)
        _req_init(&req, args[0], args[1], args[2], args[3], args[4], args[5])
        try:
            rank = self._walk(&req, None)
        finally:
            _req_release(&req)
        return None if rank < 0 else self.names[self.index_of_rank[rank]]

    def match_all(self, method="GET", host=None, path="/", query="", headers=None,
                  remote_addr=None, tls=False):
        """Names of every router matching the request, in priority order (winner first)."""
        cdef Req req
        out = []
        args = _request_args(method, host, path, query, headers, remote_addr)
        _req_init(&req, args[0], args[1], args[2], args[3], args[4], args[5])
        try:
            self._walk(&req, out)
        finally:
            _req_release(&req)
        return [self.names[self.index_of_rank[rank]] for rank in out]

    def rule(self, index):
        """The compiled Rule of the route at constructor index ``index``."""
        return self._rules[index]

    def order(self):
        """Constructor indices in matching order (priority descending, ties by name)."""
        return [self.index_of_rank[i] for i in range(self.n)]
