"""contentType (Traefik pkg/middlewares/contenttype) and Go's DetectContentType.

Traefik v3 never sniffs by default: its entry point wraps every handler in
``DisableAutoDetection`` (``rw.Header()["Content-Type"] = nil``), so a response without
Content-Type leaves without one, and so does pyroute's. The ``contentType`` middleware deletes
that nil entry for the requests through it, which lets Go's net/http sniff again: a response
through it that reaches the client with no Content-Type, no (non-empty) Content-Encoding, a
status that allows a body, and at least one body byte gets
``Content-Type: DetectContentType(<first body bytes>)`` (the WHATWG MIME sniffing algorithm as
Go implements it, on at most the first 512 bytes). ``autoDetect`` is deprecated (a warning,
as Traefik logs); ``autoDetect: false`` makes the middleware do nothing, as in Traefik v3.
"""

SNIFF_LEN = 512
_WS = b"\t\n\x0c\r "


class _Html:
    __slots__ = ("sig",)

    def __init__(self, sig):
        self.sig = sig

    def match(self, data, first):
        data = data[first:]
        sig = self.sig
        if len(data) < len(sig) + 1:
            return None
        for i, b in enumerate(sig):
            db = data[i]
            if 0x41 <= b <= 0x5A:
                db &= 0xDF
            if b != db:
                return None
        if data[len(sig)] not in b" >":       # a tag-terminating byte
            return None
        return "text/html; charset=utf-8"


class _Masked:
    __slots__ = ("mask", "pat", "skip_ws", "ct")

    def __init__(self, mask, pat, ct, skip_ws=False):
        self.mask, self.pat, self.ct, self.skip_ws = mask, pat, ct, skip_ws

    def match(self, data, first):
        if self.skip_ws:
            data = data[first:]
        if len(self.pat) != len(self.mask) or len(data) < len(self.pat):
            return None
        for i, pb in enumerate(self.pat):
            if data[i] & self.mask[i] != pb:
                return None
        return self.ct


class _Exact:
    __slots__ = ("sig", "ct")

    def __init__(self, sig, ct):
        self.sig, self.ct = sig, ct

    def match(self, data, first):
        return self.ct if data.startswith(self.sig) else None


class _Mp4:
    __slots__ = ()

    def match(self, data, first):
        if len(data) < 12:
            return None
        box = int.from_bytes(data[:4], "big")
        if len(data) < box or box % 4:
            return None
        if data[4:8] != b"ftyp":
            return None
        for st in range(8, box, 4):
            if st == 12:
                continue            # the major brand's version
            if data[st:st + 3] == b"mp4":
                return "video/mp4"
        return None


class _Text:
    __slots__ = ()

    def match(self, data, first):
        for b in data[first:]:
            if b <= 0x08 or b == 0x0B or 0x0E <= b <= 0x1A or 0x1C <= b <= 0x1F:
                return None
        return "text/plain; charset=utf-8"


_FF4 = b"\xff\xff\xff\xff"
_RIFF_MASK = _FF4 + b"\x00\x00\x00\x00" + _FF4
# Go net/http sniff.go sniffSignatures, in its order (the first match wins)
SIGNATURES = tuple(_Html(s) for s in (
    b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
    b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--")) + (
    _Masked(b"\xff" * 5, b"<?xml", "text/xml; charset=utf-8", skip_ws=True),
    _Exact(b"%PDF-", "application/pdf"),
    _Exact(b"%!PS-Adobe-", "application/postscript"),
    # UTF BOMs
    _Masked(b"\xff\xff\x00\x00", b"\xfe\xff\x00\x00", "text/plain; charset=utf-16be"),
    _Masked(b"\xff\xff\x00\x00", b"\xff\xfe\x00\x00", "text/plain; charset=utf-16le"),
    _Masked(b"\xff\xff\xff\x00", b"\xef\xbb\xbf\x00", "text/plain; charset=utf-8"),
    # images
    _Exact(b"\x00\x00\x01\x00", "image/x-icon"),
    _Exact(b"\x00\x00\x02\x00", "image/x-icon"),
    _Exact(b"BM", "image/bmp"),
    _Exact(b"GIF87a", "image/gif"),
    _Exact(b"GIF89a", "image/gif"),
    _Masked(_RIFF_MASK + b"\xff\xff", b"RIFF\x00\x00\x00\x00WEBPVP", "image/webp"),
    _Exact(b"\x89PNG\r\n\x1a\n", "image/png"),
    _Exact(b"\xff\xd8\xff", "image/jpeg"),
    # audio and video
    _Masked(_RIFF_MASK, b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
    _Masked(b"\xff\xff\xff", b"ID3", "audio/mpeg"),
    _Masked(b"\xff" * 5, b"OggS\x00", "application/ogg"),
    _Masked(b"\xff" * 8, b"MThd\x00\x00\x00\x06", "audio/midi"),
    _Masked(_RIFF_MASK, b"RIFF\x00\x00\x00\x00AVI ", "video/avi"),
    _Masked(_RIFF_MASK, b"RIFF\x00\x00\x00\x00WAVE", "audio/wave"),
    _Mp4(),
    _Exact(b"\x1a\x45\xdf\xa3", "video/webm"),
    # fonts
    _Masked(b"\x00" * 34 + b"\xff\xff", b"\x00" * 34 + b"LP", "application/vnd.ms-fontobject"),
    _Exact(b"\x00\x01\x00\x00", "font/ttf"),
    _Exact(b"OTTO", "font/otf"),
    _Exact(b"ttcf", "font/collection"),
    _Exact(b"wOFF", "font/woff"),
    _Exact(b"wOF2", "font/woff2"),
    # archives
    _Exact(b"\x1f\x8b\x08", "application/x-gzip"),
    _Exact(b"PK\x03\x04", "application/zip"),
    _Exact(b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
    _Exact(b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    _Exact(b"\x00asm", "application/wasm"),
    _Text(),
)


def detect_content_type(data):
    """Go's http.DetectContentType: a MIME type for ``data`` (its first 512 bytes)."""
    data = bytes(data[:SNIFF_LEN])
    first = 0
    while first < len(data) and data[first] in _WS:
        first += 1
    for sig in SIGNATURES:
        ct = sig.match(data, first)
        if ct is not None:
            return ct
    return "application/octet-stream"


# Go's bodyAllowedForStatus: no body for 1xx, 204, 304
def body_allowed(status):
    return not (100 <= status < 200 or status == 204 or status == 304)


DEPRECATED_AUTODETECT = ("AutoDetect option is deprecated, Content-Type middleware is only "
                         "meant to be used to enable the content-type detection, please "
                         "remove any usage of this option.")


class ContentType:
    """Re-enables Go's Content-Type sniffing for the responses through it (see the module)."""
    __slots__ = ("enabled",)
    static = False

    def __init__(self, spec):
        auto = spec.get("autoDetect")
        if auto is not None and not isinstance(auto, bool):
            raise ValueError("autoDetect: expected true or false")
        for key in spec:
            if key != "autoDetect":
                raise ValueError("%s: unknown option" % key)
        # Traefik New(): autoDetect false returns next (nothing is re-enabled)
        self.enabled = auto is not False

    def on_response(self, ex, head):
        # Traefik deletes the entry point's nil Content-Type before calling next: Go's server
        # then sniffs when the response is written, with the headers it has by then — so
        # the decision waits for the end of the response phase and the first body bytes
        if self.enabled:
            prev = ex.sniff
            if prev is not None and hasattr(prev, "autodetect"):
                # compress's gzip sniff (gzhttp) runs first; with the nil entry deleted it
                # sets the type it sniffs, then Go's server sniff (this) finds it set
                prev.autodetect = True
                prev.after = sniff
            else:
                ex.sniff = sniff


def sniff(head, first):
    """Go's chunkWriter.writeHeader: a response with no Content-Type line (an empty one
    counts as one), no non-empty Content-Encoding, a status that allows a body and body bytes
    gets Content-Type: DetectContentType(first bytes)."""
    if not first or not body_allowed(head.status):
        return
    if head.get(b"content-type") is not None or head.get(b"content-encoding"):
        return
    head.set(b"Content-Type", detect_content_type(first).encode("ascii"))
