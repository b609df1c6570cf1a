"""basicAuth and digestAuth (Traefik pkg/middlewares/auth, with the htpasswd / digest code of
abbot/go-http-auth as Traefik pins it: containous/go-http-auth a37a763).

basicAuth
- ``users``: ``name:hash`` lines (exactly one ``:``, else Traefik's "error parsing BasicUser");
  none at all is an error ("no users found in"); a name declared twice: the last line wins,
  as Traefik's map (``check`` warns). The CRD provider fills ``users`` from the ``secret``
  (pyroute.manifests.middlewares: a kubernetes.io/basic-auth Secret becomes one ``{SHA}``
  line, another Secret's single key holds the lines).
- hashes as go-http-auth's CheckSecret: ``{SHA}`` (base64 SHA-1), ``$2a$ $2b$ $2x$ $2y$``
  (bcrypt), anything else is tried as MD5-crypt ``$magic$salt$hash`` (``$apr1$`` and ``$1$``);
  a plain-text "hash" never matches.
- Authorization as Go's Request.BasicAuth: the first value, "Basic " in any case, then strict
  standard base64 of ``user:password``. Anything else, an unknown user or a wrong password:
  401 ``Www-Authenticate: Basic realm="..."``, body ``401 Unauthorized\\n``.
- an unknown user costs the check of a real hash (Traefik's notFoundSecret), every comparison
  is constant-time.
- bcrypt is never run on the worker's loop: a small thread pool checks it (the bcrypt package
  releases the GIL) while the request waits (``WAIT``), concurrent checks of the same
  credentials share one computation (Traefik's singleflight), and verified credentials are
  remembered (bounded; keyed by the Authorization value and checked against the hash it was
  verified with; a failure is never remembered). The cache lives in the middleware object,
  which a reload rebuilds: a changed hash never matches an old entry.

digestAuth (RFC 2617, MD5, qop=auth, as go-http-auth's DigestAuth)
- ``users``: ``name:realm:HA1`` lines (exactly two ``:``); the realm the middleware checks is
  its own (``realm``, default "traefik").
- challenge ``Digest realm="..", nonce="..", opaque="..", algorithm="MD5", qop="auth"``; a
  correct answer with an out-of-order nonce count gets the same with ``stale="true"`` (the
  client retries without asking its user again); a replayed count, a nonce the instance did not
  issue, a wrong response: a new challenge.

Both: ``headerField`` (the user upstream in that header, the client's own lines of it removed),
``removeHeader`` (no Authorization upstream). Deliberate differences from Traefik are listed in
docs/middlewares.md (digest: an unknown user never authenticates; workers share nonces).
"""
import base64
import hashlib
import hmac
import os
import re
import threading
import time

from ..proxy.responses import error_response, status_line

from .._engine.exchange import WAIT

DEFAULT_REALM = "traefik"
# go-http-auth NormalHeaders: UnauthContentType, UnauthResponse
_UNAUTH_BODY = b"401 Unauthorized\n"

# One key per pyroute instance: made at import in the master, before it forks the workers,
# so every worker derives the same digest opaque and recognises its siblings' nonces.
_KEY = os.urandom(32)

_B64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BCRYPT = (b"$2a$", b"$2b$", b"$2x$", b"$2y$")
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def _header_text(value):
    # Go's Header.Write: CR and LF in a value become spaces
    return value.replace("\r", " ").replace("\n", " ")


def _challenge(value):
    body = _UNAUTH_BODY
    return (status_line(401) + b"Content-Type: text/plain\r\n"
            + b"Www-Authenticate: " + value + b"\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _options(spec, kind):
    if not isinstance(spec, dict):
        raise ValueError("%s: expected a mapping" % kind)
    users = spec.get("users")
    if users is None:
        users = []
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ValueError("users: expected a list of strings")
    realm = spec.get("realm")
    if realm is not None and not isinstance(realm, str):
        raise ValueError("realm: expected a string")
    header = spec.get("headerField")
    if header is not None and not isinstance(header, str):
        raise ValueError("headerField: expected a string")
    if header and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", header):
        # Go's transport refuses such a name on every request (500); refused here at load
        raise ValueError("headerField: %r is not a valid header name" % header)
    remove = spec.get("removeHeader")
    if remove is not None and not isinstance(remove, bool):
        raise ValueError("removeHeader: expected a boolean")
    if spec.get("usersFile"):
        # not in the CRD (Traefik's file provider only); pyroute reads no such files
        raise ValueError("usersFile: not supported by pyroute (use a Secret)")
    return users, realm or DEFAULT_REALM, header or None, bool(remove)


def _user_edits(self_, ex, user):
    """headerField and removeHeader on the request going upstream (Traefik: Header.Del then
    Header[field] = user; Del(Authorization) last)."""
    if self_.header_field is not None:
        removes = ex.remove_headers
        if removes is None:
            ex.remove_headers = removes = []
        removes.append(self_.header_lower)
        if not (self_.remove and self_.header_lower == b"authorization"):
            sets = ex.set_headers
            if sets is None:
                ex.set_headers = sets = []
            sets.append((self_.header_name, user))
    if self_.remove:
        removes = ex.remove_headers
        if removes is None:
            ex.remove_headers = removes = []
        removes.append(b"authorization")


def _set_user(ex, user):
    # the access log's ClientUsername (Traefik sets it for failed attempts too)
    v = ex.vars
    if v is None:
        ex.vars = v = {}
    v["ClientUsername"] = user


# ---- htpasswd hashes (go-http-auth basic.go, md5crypt.go) --------------------------------

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SWAPS = (12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11)


def md5crypt(password, salt, magic):
    """go-http-auth MD5Crypt (Poul-Henning Kamp's MD5 crypt; Apache's $apr1$ is the same
    algorithm with another magic): ``magic + salt + "$" + 22 characters``."""
    md5 = hashlib.md5
    d = md5(password + magic + salt)
    mixin = md5(password + salt + password).digest()
    d.update(bytes(mixin[i % 16] for i in range(len(password))))
    i = len(password)
    while i:
        d.update(b"\0" if i & 1 else password[:1])
        i >>= 1
    final = d.digest()
    for i in range(1000):
        mid = (salt if i % 3 else b"") + (password if i % 7 else b"")
        if i & 1:
            final = md5(password + mid + final).digest()
        else:
            final = md5(final + mid + password).digest()
    out = bytearray()
    v = bits = 0
    for i in _SWAPS:
        v |= final[i] << bits
        bits += 8
        while bits > 6:
            out.append(_ITOA64[v & 0x3f])
            v >>= 6
            bits -= 6
    out.append(_ITOA64[v & 0x3f])
    return magic + salt + b"$" + bytes(out)


def _check_sha(password, secret):
    digest = base64.b64encode(hashlib.sha1(password).digest())
    return hmac.compare_digest(secret[5:], digest)


def _check_md5(password, secret):
    parts = secret.split(b"$", 3)
    if len(parts) != 4:
        return False
    return hmac.compare_digest(secret, md5crypt(password, parts[2], b"$" + parts[1] + b"$"))


def _check_bcrypt(password, secret):
    import bcrypt
    try:
        # Go's bcrypt keys Blowfish with the first 72 bytes; bcrypt 5 refuses longer input
        return bcrypt.checkpw(password[:72], secret)
    except ValueError:              # not a valid bcrypt hash (cost, length, alphabet)
        return False


def check_secret(password, secret):
    """go-http-auth CheckSecret: whether ``password`` matches the htpasswd ``secret``."""
    if secret.startswith(b"{SHA}"):
        return _check_sha(password, secret)
    if secret[:4] in _BCRYPT:
        return _check_bcrypt(password, secret)
    return _check_md5(password, secret)


def basic_credentials(value):
    """Go's Request.BasicAuth on the first Authorization value: (user, password) or None."""
    if value is None or len(value) < 6 or value[:6].lower() != b"basic ":
        return None
    data = value[6:]
    # base64.StdEncoding: padded, nothing outside the alphabet, nothing after the padding
    if _B64.fullmatch(data) is None:
        return None
    user, sep, password = base64.b64decode(data).partition(b":")
    if not sep:
        return None
    return user, password


# ---- the thread pool bcrypt runs in --------------------------------------------------------

class _Pool:
    """A few daemon threads per worker process, started on first use (never in the master,
    and again in a forked child: threads do not survive fork)."""

    def __init__(self, size=2):
        self.size = size
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.jobs = []
        self.pid = 0

    def submit(self, fn, *args):
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.jobs = []
                for _ in range(self.size):
                    threading.Thread(target=self._run, daemon=True,
                                     name="pyroute-auth").start()
            self.jobs.append((fn, args))
            self.cond.notify()

    def _run(self):
        while True:
            with self.lock:
                while not self.jobs:
                    self.cond.wait()
                fn, args = self.jobs.pop(0)
            try:
                fn(*args)
            except Exception:       # noqa: BLE001  (a job reports through its own callback)
                pass


POOL = _Pool()


class BasicAuth:
    __slots__ = ("users", "realm", "header_field", "header_name", "header_lower", "remove",
                 "not_found", "challenge", "cache", "pending", "duplicates")
    static = False
    compat_note = ("bcrypt, $apr1$/$1$ MD5-crypt, {SHA}; bcrypt checked off the event loop, "
                   "verified credentials remembered")
    CACHE_SIZE = 1024

    def __init__(self, spec):
        lines, self.realm, self.header_field, self.remove = _options(spec, "basicAuth")
        users = {}
        self.duplicates = []
        for line in lines:
            parts = line.split(":")
            if len(parts) != 2:     # basicUserParser
                raise ValueError("users: error parsing BasicUser: %s" % line)
            name, secret = parts
            if _CTL.search(name):
                raise ValueError("users: user name %r holds a control character" % name)
            if name in users:
                self.duplicates.append(name)
            users[name] = secret
        if not users:
            raise ValueError("users: no users found in ")   # Traefik: "no users found in %s"
        self.users = {n.encode("utf-8"): s.encode("utf-8") for n, s in users.items() if s}
        # Traefik: a hash is computed for an unknown user too (one of the configured ones)
        self.not_found = next((s.encode("utf-8") for s in users.values() if s), b"{SHA}")
        self.challenge = _challenge(
            b'Basic realm="' + _header_text(self.realm).encode("utf-8") + b'"')
        if self.header_field is not None:
            self.header_name = self.header_field.encode("latin-1")
            self.header_lower = self.header_name.lower()
        else:
            self.header_name = self.header_lower = None
        self.cache = {}             # Authorization value -> (user, hash it matched)
        self.pending = {}           # (password, hash) -> [(ex, value, user), ...]

    def warnings(self):
        return [("users", "user %s is declared more than once: the last line wins (as Traefik)"
                 % name) for name in dict.fromkeys(self.duplicates)]

    def verify(self, ex):
        """The check on_request makes, synchronously, bcrypt included (``pyroute explain``):
        (user, "") or (None, why it fails)."""
        creds = basic_credentials(ex.req.header(b"authorization"))
        if creds is None:
            return None, "no Basic credentials in Authorization"
        user, password = creds
        secret = self.users.get(user)
        if secret is None:
            check_secret(password, self.not_found)
            return None, "unknown user %s" % user.decode("utf-8", "replace")
        if not check_secret(password, secret):
            return None, "wrong password for %s" % user.decode("utf-8", "replace")
        return user, ""

    def on_request(self, ex):
        value = ex.req.header(b"authorization")
        creds = basic_credentials(value)
        if creds is None:
            return self.challenge
        user, password = creds
        secret = self.users.get(user)
        hit = self.cache.get(value)
        if hit is not None and secret is not None and hit[0] == user and hit[1] is secret:
            _set_user(ex, user)
            _user_edits(self, ex, user)
            return None
        _set_user(ex, user)
        known = secret is not None
        if not known:
            secret = self.not_found
        if secret[:4] not in _BCRYPT:
            # SHA-1 and MD5-crypt: microseconds to a millisecond, checked here
            ok = check_secret(password, secret) and known
            return self._finish(ex, value, user, secret, ok)
        key = (password, secret)
        waiting = self.pending.get(key)
        entry = (ex, value, user if known else None)
        if waiting is not None:
            waiting.append(entry)   # the same check is running: share its result
            return WAIT
        self.pending[key] = [entry]
        loop = ex.loop
        POOL.submit(self._verify, loop, key)
        return WAIT

    def _finish(self, ex, value, user, secret, ok):
        if not ok:
            return self.challenge
        cache = self.cache
        if len(cache) >= self.CACHE_SIZE:
            del cache[next(iter(cache))]
        cache[value] = (user, secret)
        _user_edits(self, ex, user)
        return None

    def _verify(self, loop, key):
        # a pool thread: bcrypt releases the GIL; the answer goes back to the worker's loop
        try:
            waiters = self.pending.get(key) or ()
            if waiters and all(entry[0].cancelled for entry in list(waiters)):
                ok = None       # every client gone (a flood of abandoned requests): skip it
            else:
                ok = _check_bcrypt(key[0], key[1])
        except Exception:       # noqa: BLE001  (never leave the requests waiting)
            ok = False
        loop.call_soon_threadsafe(self._verified, key, ok)

    def _verified(self, key, ok):
        entries = self.pending.pop(key, ())
        if ok is None:
            # skipped for clients that were gone; one that came meanwhile gets a real check
            live = [e for e in entries if not e[0].cancelled]
            if live:
                self.pending[key] = live
                POOL.submit(self._verify, live[0][0].loop, key)
            return
        for ex, value, user in entries:
            if ex.cancelled:
                continue
            answer = self._finish(ex, value, user, key[1], ok and user is not None)
            if answer is None:
                ex.resume()
            else:
                ex.answer(answer)


# ---- digest (go-http-auth digest.go, misc.go) ----------------------------------------------

_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
            "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_PANIC = object()           # ParsePairs indexes an empty value: Go panics, Traefik answers 500
_HEX64 = re.compile(r"[0-9A-Fa-f]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def parse_list(value):
    """go-http-auth ParseList: comma-separated elements, quotes and backslash escapes kept."""
    out = []
    escape = quote = False
    b = []
    for r in value:
        if escape:
            b.append(r)
            escape = False
        elif quote:
            if r == "\\":
                escape = True
            else:
                if r == '"':
                    quote = False
                b.append(r)
        elif r == ",":
            out.append("".join(b).strip(_GO_SPACE))
            b = []
        elif r == '"':
            quote = True
            b.append(r)
        else:
            b.append(r)
    s = "".join(b)
    if s:
        out.append(s.strip(_GO_SPACE))
    return out


def parse_pairs(value):
    """go-http-auth ParsePairs (the containous fork): key=value elements, values unquoted;
    ``_PANIC`` where Go indexes an empty value ("key=") or slices a lone quote."""
    m = {}
    for pair in parse_list(value.strip(_GO_SPACE)):
        i = pair.find("=")
        if i < 0:
            m[pair] = ""
            continue
        v = pair[i + 1:]
        if not v:
            return _PANIC
        if v[0] == '"' and v[-1] == '"':
            if len(v) < 2:
                return _PANIC
            v = v[1:-1]
        m[pair[:i]] = v
    return m


def digest_params(value):
    """DigestAuthParams: the pairs of a "Digest ..." value (exact case), None otherwise."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace")
    scheme, sep, rest = text.partition(" ")
    if not sep or scheme != "Digest":
        return None
    return parse_pairs(rest)


def _unescape(raw):
    """Percent-decoding as Go's url.unescape (path mode): the bytes, None for a bad escape."""
    if b"%" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25:
            h = raw[i + 1:i + 3]
            if len(h) != 2 or not all(x in b"0123456789abcdefABCDEF" for x in h):
                return None
            out.append(int(h, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def uri_path(uri):
    """The Path of Go's url.Parse(uri), decoded; None where url.Parse fails."""
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in uri):
        return None                 # "invalid control character in URL"
    uri = uri.split("#", 1)[0]
    m = _SCHEME.match(uri)
    rest = uri
    if m is not None:
        rest = uri[m.end():]
    elif uri.startswith(":"):
        return None                 # "missing protocol scheme"
    rest = rest.split("?", 1)[0]
    if m is not None:
        if rest.startswith("//"):
            slash = rest.find("/", 2)
            rest = rest[slash:] if slash >= 0 else ""
        elif not rest.startswith("/"):
            return b""              # opaque URL: no Path
    elif ":" in rest.split("/", 1)[0]:
        return None                 # "first path segment in URL cannot contain colon"
    return _unescape(rest.encode("utf-8"))


def _request_path(ex):
    """r.URL.Path: the request's path as the middlewares before left it, decoded."""
    p = ex.path
    decoded = _unescape(p)
    return p if decoded is None else decoded


def _request_uri(ex):
    """r.RequestURI: the target as received, or as a path middleware before rewrote it
    (Traefik's stripPrefix and friends set RequestURI from the new URL)."""
    req = ex.req
    if ex.path == req.path and ex.query == req.query:
        return req.target
    return ex.path + (b"?" + ex.query if ex.query is not None else b"")


def _h(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class DigestAuth:
    __slots__ = ("users", "realm", "header_field", "header_name", "header_lower", "remove",
                 "opaque", "clients", "challenge_head", "stale_head", "duplicates")
    static = False
    compat_note = ("an unknown user never authenticates (go-http-auth: with an empty HA1); "
                   "nonces of another worker get stale=true")
    CLIENT_CACHE_SIZE = 1000        # go-http-auth DefaultClientCacheSize
    CLIENT_CACHE_TOLERANCE = 100    # DefaultClientCacheTolerance

    def __init__(self, spec):
        lines, self.realm, self.header_field, self.remove = _options(spec, "digestAuth")
        users = {}
        self.duplicates = []
        for line in lines:
            parts = line.split(":")
            if len(parts) != 3:     # digestUserParser
                raise ValueError("users: error parsing DigestUser: %s" % line)
            key = parts[0] + ":" + parts[1]
            if _CTL.search(parts[0]):
                raise ValueError("users: user name %r holds a control character" % parts[0])
            if key in users:
                self.duplicates.append(key)
            users[key] = parts[2]
        # an empty HA1 never authenticates (go-http-auth would compute with "": see docs)
        self.users = {k: v for k, v in users.items() if v}
        # Traefik: RandomKey() per middleware; here derived from the instance key and the
        # configuration, so that every worker (and a reload that changes nothing) agrees
        mac = hmac.new(_KEY, ("opaque\0%s\0%r" % (self.realm, sorted(users.items()))).encode(),
                       hashlib.sha256).digest()
        self.opaque = base64.b64encode(mac[:12]).decode("ascii")
        realm = _header_text(self.realm)
        self.challenge_head = 'Digest realm="%s", nonce="' % realm
        self.stale_head = self.challenge_head
        self.clients = {}           # nonce -> [nc, lastSeen, used]
        if self.header_field is not None:
            self.header_name = self.header_field.encode("latin-1")
            self.header_lower = self.header_name.lower()
        else:
            self.header_name = self.header_lower = None

    def warnings(self):
        return [("users", "user %s is declared more than once: the last line wins (as Traefik)"
                 % key) for key in dict.fromkeys(self.duplicates)]

    # nonces: RandomKey's shape (16 base64 characters of 12 bytes): 8 random bytes and a MAC
    # of them under the instance key, so a sibling worker's nonce is recognised as ours
    def _nonce_mac(self, raw):
        return hmac.new(_KEY, b"nonce" + raw + self.opaque.encode(), hashlib.sha256).digest()[:4]

    def _new_nonce(self):
        raw = os.urandom(8)
        nonce = base64.b64encode(raw + self._nonce_mac(raw)).decode("ascii")
        clients = self.clients
        if len(clients) > self.CLIENT_CACHE_SIZE + self.CLIENT_CACHE_TOLERANCE:
            # go-http-auth Purge: the ClientCacheTolerance*2 least recently seen
            for old in sorted(clients, key=lambda n: clients[n][1])[
                    :self.CLIENT_CACHE_TOLERANCE * 2]:
                del clients[old]
        clients[nonce] = [0, time.monotonic(), False]
        return nonce

    def _ours(self, nonce):
        try:
            raw = base64.b64decode(nonce.encode("ascii"), validate=True)
        except (ValueError, UnicodeError):
            return False
        return len(raw) == 12 and hmac.compare_digest(raw[8:], self._nonce_mac(raw[:8]))

    def challenge(self, stale):
        value = '%s%s", opaque="%s", %salgorithm="MD5", qop="auth"' % (
            self.challenge_head, self._new_nonce(), self.opaque,
            'stale="true", ' if stale else "")
        return _challenge(value.encode("utf-8"))

    def check(self, ex):
        """go-http-auth CheckAuth: (username, None) when authenticated, else (None, stale)
        — or (_PANIC, None) where Traefik's handler panics (answered 500)."""
        auth = digest_params(ex.req.header(b"authorization"))
        if auth is None:
            return None, False
        if auth is _PANIC:
            return _PANIC, False
        if auth.get("username"):
            _set_user(ex, auth["username"].encode("utf-8"))     # the access log's, as Traefik
        auth.setdefault("algorithm", "MD5")
        if self.opaque != auth.get("opaque", "") or auth["algorithm"] != "MD5" \
                or auth.get("qop", "") != "auth":
            return None, False
        uri = auth.get("uri", "")
        if _request_uri(ex).decode("utf-8", "replace") != uri:
            # go-http-auth lets the uri be a path prefix of the request's path
            upath = uri_path(uri)
            rpath = _request_path(ex)
            if upath is None or len(upath) > len(rpath) or not rpath.startswith(upath):
                return None, False
        username = auth.get("username", "")
        ha1 = self.users.get(username + ":" + self.realm)
        if ha1 is None:
            return None, False      # deliberate: go-http-auth goes on with HA1 = ""
        nonce, nc_text, cnonce = auth.get("nonce", ""), auth.get("nc", ""), auth.get("cnonce", "")
        ha2 = _h(ex.req.method.decode("latin-1") + ":" + uri)
        kd = _h(":".join((ha1, nonce, nc_text, cnonce, auth["qop"], ha2)))
        if not hmac.compare_digest(kd.encode(), auth.get("response", "").encode("utf-8")):
            return None, False
        if _HEX64.fullmatch(nc_text) is None or len(nc_text.lstrip("0")) > 16:
            return None, False      # strconv.ParseUint(nc, 16, 64)
        nc = int(nc_text, 16)
        client = self.clients.get(nonce)
        if client is None:
            # a nonce of a sibling worker (or one purged): the client knows the password,
            # let it retry with one of ours without asking its user
            return None, self._ours(nonce)
        if client[2]:
            if nc == client[0]:
                return None, False  # replay
            if nc < client[0]:
                return None, True   # out-of-order pipelined requests: stale
        client[0] = nc
        client[1] = time.monotonic()
        client[2] = True
        return username, False

    def on_request(self, ex):
        username, stale = self.check(ex)
        if username is _PANIC:
            return error_response(500)
        if username is None:
            if self.header_field is not None:
                # Traefik parses headerField's value for its log line: the same panic
                if digest_params(ex.req.header(self.header_lower)) is _PANIC:
                    return error_response(500)
            return self.challenge(stale)
        user = username.encode("utf-8")
        _set_user(ex, user)
        _user_edits(self, ex, user)
        return None
