"""compress (Traefik pkg/middlewares/compress: compress.go, acceptencoding.go,
compression_handler.go; gzip through klauspost/compress gzhttp).

Per request, in the response phase (``on_response``; nothing runs in the request phase):

- HEAD requests, and requests whose own Content-Type is excluded (``application/grpc``
  always, plus ``excludedContentTypes``), are never compressed;
- the encoding is Traefik's choice from every ``Accept-Encoding`` line (q-values, default
  q 1, ``q=0`` refused, ties broken by the order of ``encodings``, ``*`` meaning
  ``defaultEncoding`` or the first encoding, ``identity`` and an empty header meaning none);
  no header: ``defaultEncoding`` if set, else none;
- the chosen handler adds ``Vary: Accept-Encoding`` whatever happens next (gzhttp and
  Traefik's brotli/zstd handler both do), then leaves alone a response that already has a
  Content-Encoding, a Content-Type it cannot parse or that the include/exclude lists rule
  out, a 204/304 (no body), and one whose Content-Length is under ``minResponseBodyBytes``;
  gzip (gzhttp) also needs ``gzip`` itself in Accept-Encoding (not ``*``), skips responses
  with a Content-Range, and drops Accept-Ranges from what it compresses;
- otherwise Content-Length goes, ``Content-Encoding`` is set and the body is compressed as
  it flows (``ex.wrap_body``): each piece the backend sends is compressed and flushed at
  once, so a streamed or endless body reaches the client as it comes and nothing is held.

``minResponseBodyBytes``: Traefik buffers the first writes until it has that many bytes and
then decides; but its reverse proxy flushes after every write of a response without a
Content-Length (Go's ReverseProxy, flushInterval -1), and a flush starts compression with
whatever is buffered. So what a client gets is decided by the head: with a Content-Length,
compressed iff that length is at least the minimum; without one (chunked, until close),
compressed. pyroute decides there, from the head, and never buffers the body.
"""
try:
    # zlib-ng: the same deflate format ~1.3x faster than zlib 1.2 at level 6 with a slightly
    # smaller output (bench/compress_vs_nginx.py); compression runs on the worker's loop
    from zlib_ng import zlib_ng as zlib
except ImportError:         # pragma: no cover - a build without the wheel
    import zlib

from . import contenttype, mimetype

DEFAULT_MIN_SIZE = 1024
SUPPORTED = ("gzip", "br", "zstd")
WILDCARD, IDENTITY, NOT_ACCEPTABLE = "*", "identity", "not_acceptable"
# klauspost gzhttp's default level (gzip.DefaultCompression), andybalholm/brotli's default
# quality, klauspost zstd's SpeedDefault (zstd level 3)
GZIP_LEVEL, BROTLI_QUALITY, ZSTD_LEVEL = 6, 6, 3


def _list(spec, key):
    v = spec.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("%s: expected a list of strings" % key)
    return v


def _media_types(values, key):
    out = []
    for i, v in enumerate(values):
        try:
            out.append(mimetype.parse(v))
        except ValueError as e:
            raise ValueError("%s[%d]: parsing %s media type: %s"
                             % (key, i, key[:8], e)) from None
    return out


class Compress:
    compat_note = ("minResponseBodyBytes decided from the head (a Content-Length under it: "
                   "not compressed; no length: compressed, as Traefik's per-write flush "
                   "does); gzip of a response without Content-Type filtered on the type "
                   "sniffed from its first bytes, as gzhttp")
    __slots__ = ("excludes", "req_excludes", "includes", "min_size", "encodings",
                 "default", "priority", "_negotiated", "_types")
    static = False

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("expected an object")
        excl = _list(spec, "excludedContentTypes")
        incl = _list(spec, "includedContentTypes")
        if excl and incl:
            raise ValueError("excludedContentTypes: excludedContentTypes and "
                             "includedContentTypes options are mutually exclusive")
        self.excludes = [mimetype.parse("application/grpc")] + _media_types(
            excl, "excludedContentTypes")
        # compress.go: the request's Content-Type is compared by media type only
        self.req_excludes = frozenset(m for m, _ in self.excludes)
        self.includes = _media_types(incl, "includedContentTypes")
        size = spec.get("minResponseBodyBytes")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError("minResponseBodyBytes: expected an integer")
        self.min_size = size if size and size > 0 else DEFAULT_MIN_SIZE
        encodings = spec.get("encodings")
        if encodings is None:
            encodings = list(SUPPORTED)
        if not isinstance(encodings, list) or not all(isinstance(x, str) for x in encodings):
            raise ValueError("encodings: expected a list of strings")
        if not encodings:
            raise ValueError("encodings: at least one encoding must be specified")
        for i, e in enumerate(encodings):
            if e not in SUPPORTED:
                raise ValueError("encodings[%d]: unsupported encoding: %s" % (i, e))
        default = spec.get("defaultEncoding") or ""
        if not isinstance(default, str):
            raise ValueError("defaultEncoding: expected a string")
        if default and default not in encodings:
            raise ValueError("defaultEncoding: unsupported default encoding: %s" % default)
        self.encodings = encodings
        self.default = default
        # buildSupportedEncodings: "*" first, identity last, the list's order between
        self.priority = {WILDCARD: -1, IDENTITY: len(encodings)}
        for i, e in enumerate(encodings):
            self.priority[e] = i
        # per-response decisions memoised by the header values they depend on (clients send
        # few distinct Accept-Encoding values, backends few Content-Types): the parse runs
        # once per value, not once per response; bounded (cleared when full)
        self._negotiated = {}       # tuple of Accept-Encoding values -> (encoding, gzip ok)
        self._types = {}            # Content-Type value -> compressible (bool)

    # -- negotiation (acceptencoding.go)
    def choose(self, lines):
        """The encoding Traefik picks from the Accept-Encoding lines (a list of str; None:
        no such header): a name, "identity", "not_acceptable" or ""."""
        if lines is None:
            return self.default
        if len(lines) == 1 and lines[0] == "":
            return IDENTITY
        found = []
        for line in lines:
            for item in line.replace(" ", "").split(","):
                name, sep, param = item.partition(";")
                if name not in self.priority:
                    continue
                weight = 1.0
                if sep and param.startswith("q="):
                    w = _go_float(param[2:])
                    if w == 0:
                        continue
                    weight = w
                found.append((-weight, self.priority[name], name))
        if not found:
            return NOT_ACCEPTABLE
        found.sort(key=lambda t: (t[0], t[1]))    # stable: Go's SortFunc is not, ties
        best = found[0][2]                        # of the same name are the same answer
        if best == WILDCARD:
            return self.default or self.encodings[0]
        return best

    def _compressible(self, ct):
        # the Content-Type filters of gzhttp / Traefik's compress handler for one value
        try:
            media, params = mimetype.parse(ct.decode("latin-1"))
        except ValueError:
            return False                        # unparsable: never compressed
        if self.includes and not any(_equals(p, media, params) for p in self.includes):
            return False
        return not any(_equals(p, media, params) for p in self.excludes)

    def on_response(self, ex, head):
        req = ex.req
        if req.method == b"HEAD":
            return
        if _req_media_type(req) in self.req_excludes:
            return
        key = tuple(req.header_values(b"accept-encoding"))
        got = self._negotiated.get(key)
        if got is None:
            lines = [v.strip(b" \t").decode("latin-1") for v in key] if key else None
            enc = self.choose(lines)
            got = (enc, enc != "gzip" or _gzhttp_accepts_gzip(lines))
            if len(self._negotiated) >= 256:
                self._negotiated.clear()
            self._negotiated[key] = got
        enc = got[0]
        if enc not in SUPPORTED:
            return
        head.add(b"Vary", b"Accept-Encoding")
        if not got[1]:
            return
        status = head.status
        if status == 204 or status == 304 or status < 200:
            return
        if head.get(b"Content-Encoding"):
            return
        ct = head.get(b"Content-Type")
        if ct:
            ok = self._types.get(ct)
            if ok is None:
                ok = self._compressible(ct)
                if len(self._types) >= 256:
                    self._types.clear()
                self._types[ct] = ok
            if not ok:
                return
        elif enc == "gzip":
            if head.get(b"Content-Range") is not None:
                return
            cl = head.get(b"Content-Length")
            if head.body is None and cl is not None:
                try:
                    if int(cl) < self.min_size:
                        return              # gzhttp: plain, without sniffing
                except ValueError:
                    return
            # gzhttp sniffs the type of a response without one (DetectContentType on the
            # first bytes written) and filters that: decided once the first body bytes are
            # there (the connection holds the head for them, as for contentType)
            prev = ex.sniff
            ex.sniff = _GzipSniff(self, ex, prev, getattr(prev, "autodetect",
                                                          prev is contenttype.sniff))
            return
        self._compress(ex, head, enc)

    def _compress(self, ex, head, enc):
        body = head.body
        if body is not None:
            # a response pyroute answers itself (a middleware's, an error page, its own
            # errors): whole, so compressed whole, as Traefik's writer would (under the
            # minimum: sent as it is)
            if len(body) < self.min_size:
                return
            if enc == "gzip":
                if head.get(b"Content-Range") is not None:
                    return
                head.remove(b"Accept-Ranges")
            t = _ENCODERS[enc]()
            data = t.feed(body) + t.finish()
            lines = [(n, v) for n, v in head.headers if n.lower() != b"content-length"]
            reason = head.reason
            head.replace(head.status, lines + [(b"Content-Encoding", enc.encode())], data)
            head.reason = reason
            return
        cl = head.get(b"Content-Length")
        if cl is not None:
            try:
                if int(cl) < self.min_size:
                    return
            except ValueError:
                return
        if enc == "gzip":
            if head.get(b"Content-Range") is not None:
                return
            head.remove(b"Accept-Ranges")
        head.remove(b"Content-Length")
        head.set(b"Content-Encoding", enc.encode())
        ex.wrap_body(_ENCODERS[enc]())


class _GzipSniff:
    """``ex.sniff`` for a gzip response without Content-Type: gzhttp's Write/Flush/Close
    sniff ``DetectContentType(first bytes)`` (a status that allows a body, bytes there), set
    it as Content-Type when the entry point's nil entry is gone (``autodetect``: a
    contentType middleware in the chain, as Traefik's deletes it for the whole exchange),
    and compress iff the include/exclude lists allow that type; no bytes: plain. ``after``:
    the sniff that was there (contentType's, Go's server sniff, which then finds the type
    set or the body encoded)."""
    __slots__ = ("mw", "ex", "after", "autodetect")

    def __init__(self, mw, ex, after, autodetect):
        self.mw, self.ex, self.after, self.autodetect = mw, ex, after, autodetect

    def __call__(self, head, first):
        if first and contenttype.body_allowed(head.status):
            ct = contenttype.detect_content_type(first)
            if self.autodetect and head.get(b"Content-Type") is None:
                head.set(b"Content-Type", ct.encode("ascii"))
            if self.mw._compressible(ct.encode("ascii")):
                self.mw._compress(self.ex, head, "gzip")
        if self.after is not None:
            self.after(head, first)


def _go_float(text):
    # strconv.ParseFloat; its error is ignored by Traefik (weight 0: skipped)
    try:
        return float(text)
    except ValueError:
        return 0.0


def _req_media_type(req):
    ct = req.header(b"content-type")
    if not ct:
        return ""
    try:
        return mimetype.parse(ct.decode("latin-1"))[0]
    except ValueError:
        return ""


def _gzhttp_accepts_gzip(lines):
    # gzhttp parseEncodings: the literal "gzip" coding with q > 0 (no "*")
    if not lines:
        return False
    for line in lines:
        for item in line.split(","):
            name, _, params = item.partition(";")
            if name.strip().lower() != "gzip":
                continue
            q = 1.0
            for p in params.split(";"):
                k, _, v = p.strip().partition("=")
                if k.strip() == "q":
                    q = _go_float(v.strip())
            if q > 0:
                return True
    return False


def _equals(parsed, media, params):
    pmedia, pparams = parsed
    if pmedia != media:
        return False
    if not pparams:
        return True
    return pparams == params


PIECE = 16384


class _Gzip:
    __slots__ = ("z",)

    def __init__(self):
        self.z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def feed(self, data):
        # in pieces of 16 KiB: no single call holds the loop long; flushed at the end of each
        # piece the backend sent (Traefik flushes as it relays)
        z = self.z
        if len(data) <= PIECE:
            return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        out = [z.compress(data[i:i + PIECE]) for i in range(0, len(data), PIECE)]
        out.append(z.flush(zlib.Z_SYNC_FLUSH))
        return b"".join(out)

    def finish(self):
        return self.z.flush(zlib.Z_FINISH)


class _Brotli:
    __slots__ = ("c",)

    def __init__(self):
        import brotli
        self.c = brotli.Compressor(quality=BROTLI_QUALITY)

    def feed(self, data):
        c = self.c
        out = [c.process(data[i:i + PIECE]) for i in range(0, len(data), PIECE)]
        out.append(c.flush())
        return b"".join(out)

    def finish(self):
        return self.c.finish()


class _Zstd:
    __slots__ = ("c",)

    def __init__(self):
        import zstandard
        self.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def feed(self, data):
        import zstandard
        c = self.c
        out = [c.compress(data[i:i + PIECE]) for i in range(0, len(data), PIECE)]
        out.append(c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        return b"".join(out)

    def finish(self):
        return self.c.flush()


_ENCODERS = {"gzip": _Gzip, "br": _Brotli, "zstd": _Zstd}
