"""Go's http.DetectContentType (net/http/sniff.go) for answers pyroute copies from a server
that sent no Content-Type (Go's server sniffs the first 512 bytes of such a body): the HTML,
XML, PDF, PostScript, BOM, image and archive signatures, then text/plain or
application/octet-stream (the audio, video and font signatures are not ported: such a body
is reported as application/octet-stream)."""

_WS = b"\t\n\x0c\r "
_HTML = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV",
         b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P",
         b"<!--")
_EXACT = ((b"%PDF-", b"application/pdf"), (b"%!PS-Adobe-", b"application/postscript"),
          (b"\xfe\xff", b"text/plain; charset=utf-16be"),
          (b"\xff\xfe", b"text/plain; charset=utf-16le"),
          (b"\xef\xbb\xbf", b"text/plain; charset=utf-8"),
          (b"\x00\x00\x01\x00", b"image/x-icon"), (b"\x00\x00\x02\x00", b"image/x-icon"),
          (b"BM", b"image/bmp"), (b"GIF87a", b"image/gif"), (b"GIF89a", b"image/gif"),
          (b"\x89PNG\r\n\x1a\n", b"image/png"), (b"\xff\xd8\xff", b"image/jpeg"),
          (b"\x1f\x8b\x08", b"application/x-gzip"), (b"PK\x03\x04", b"application/zip"),
          (b"Rar!\x1a\x07\x00", b"application/x-rar-compressed"),
          (b"Rar!\x1a\x07\x01\x00", b"application/x-rar-compressed"),
          (b"\x00asm", b"application/wasm"))
_BINARY = frozenset(list(range(0, 9)) + [0x0b] + list(range(0x0e, 0x1b))
                    + list(range(0x1c, 0x20)))


def detect_content_type(data):
    data = data[:512]
    stripped = data.lstrip(_WS)
    upper = stripped[:16].upper()
    for sig in _HTML:
        if upper.startswith(sig) and len(stripped) > len(sig) and \
                stripped[len(sig)] in b" >":
            return b"text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return b"text/xml; charset=utf-8"
    for sig, ct in _EXACT:
        if data.startswith(sig):
            return ct
    if data[:4] == b"RIFF" and data[8:14] == b"WEBPVP":
        return b"image/webp"
    if any(c in _BINARY for c in data):
        return b"application/octet-stream"
    return b"text/plain; charset=utf-8"
