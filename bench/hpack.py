"""HPACK: pyroute's Cython codec beside the PyPI ``hpack`` package (pure Python, the reference).

    .venv/bin/python bench/hpack.py [--repeat 7] [--number 2000]

Per header block of a browser-like request (13 fields) and a typical response (11 fields):
decode and encode, each on a fresh connection ("cold": empty dynamic table, every field a
literal) and on a connection that has seen the same list once ("warm": the steady state of a
keep-alive connection, most fields indexed). Prints the time per block in microseconds, the
best of ``repeat`` runs (timeit's advice: on a shared machine the minimum is the least noisy),
and the ratio. Blocks are produced by each side's own encoder, so each decoder
reads what its peer would send it; both encoders' blocks decode to the same list (checked).
"""
import argparse
import statistics
import sys
import timeit
from pathlib import Path

# this file is named hpack.py: its folder must not shadow the PyPI package of the same name
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import hpack as pyhpack  # noqa: E402

from pyroute._engine import hpack  # noqa: E402

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"www.example.com"),
    (b":path", b"/articles/2024/11/http-smuggling-explained?ref=home&utm_source=feed"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    b"Chrome/130.0.0.0 Safari/537.36"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                b"image/webp,*/*;q=0.8"),
    (b"sec-fetch-site", b"same-origin"),
    (b"sec-fetch-mode", b"navigate"),
    (b"sec-fetch-dest", b"document"),
    (b"referer", b"https://www.example.com/"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"accept-language", b"en-US,en;q=0.9"),
    (b"cookie", b"session=7f3c2a91b4e8d6f0; theme=dark"),
]

RESPONSE = [
    (b":status", b"200"),
    (b"server", b"nginx/1.22.1"),
    (b"date", b"Thu, 26 Nov 2026 22:10:31 GMT"),
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-length", b"14823"),
    (b"cache-control", b"private, max-age=0"),
    (b"etag", b"\"5f3a9c2e-39e7\""),
    (b"last-modified", b"Wed, 25 Nov 2026 18:02:11 GMT"),
    (b"vary", b"Accept-Encoding"),
    (b"x-content-type-options", b"nosniff"),
    (b"strict-transport-security", b"max-age=31536000"),
]


def per_block(fn, repeat, number):
    runs = timeit.repeat(fn, repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e6, min(runs) / number * 1e6


def cases(headers):
    """(label, pyroute callable, reference callable) for one header list."""
    ours_cold = hpack.Encoder().encode(headers)
    e = hpack.Encoder()
    e.encode(headers)
    ours_warm = e.encode(headers)
    ref_enc = pyhpack.Encoder()
    ref_cold = ref_enc.encode(headers)
    ref_warm = ref_enc.encode(headers)
    # each block must decode to the list on the other side too (and on its own)
    for block in (ours_cold, ref_cold):
        assert hpack.Decoder().decode(block) == headers
        got = pyhpack.Decoder().decode(block, raw=True)
        assert [(bytes(n), bytes(v)) for n, v in got] == headers

    warm_dec = hpack.Decoder()
    warm_dec.decode(ours_cold)
    ref_warm_dec = pyhpack.Decoder()
    ref_warm_dec.decode(ref_cold, raw=True)
    assert warm_dec.decode(ours_warm) == headers

    enc_warm = hpack.Encoder()
    enc_warm.encode(headers)
    ref_enc_warm = pyhpack.Encoder()
    ref_enc_warm.encode(headers)
    return [
        ("decode cold", lambda: hpack.Decoder().decode(ours_cold),
         lambda: pyhpack.Decoder().decode(ref_cold, raw=True)),
        ("decode warm", lambda: warm_dec.decode(ours_warm),
         lambda: ref_warm_dec.decode(ref_warm, raw=True)),
        ("encode cold", lambda: hpack.Encoder().encode(headers),
         lambda: pyhpack.Encoder().encode(headers)),
        ("encode warm", lambda: enc_warm.encode(headers),
         lambda: ref_enc_warm.encode(headers)),
    ], (len(ours_cold), len(ours_warm), len(ref_cold), len(ref_warm))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args()
    print("%-22s %12s %12s %8s" % ("block", "pyroute us", "hpack us", "ratio"))
    for name, headers in (("request", REQUEST), ("response", RESPONSE)):
        rows, sizes = cases(headers)
        print("%s: %d fields; block octets pyroute cold/warm %d/%d, hpack %d/%d"
              % (name, len(headers), *sizes))
        for label, ours, ref in rows:
            _, o = per_block(ours, args.repeat, args.number)
            _, r = per_block(ref, args.repeat, max(1, args.number // 20))
            print("  %-20s %12.2f %12.2f %7.0fx" % (label, o, r, r / o))


if __name__ == "__main__":
    main()
