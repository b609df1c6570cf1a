"""TEMPORARY: the interface of engine/hpack.pyx (branch ``hpack``) over the PyPI ``hpack``
package, until that module is merged; engine/h2.pyx imports only these names.

Contract: ``Decoder(max_table_size, max_header_list_size).decode(bytes) -> [(name, value)]``
(bytes pairs), ``set_max_table_size(n)``; ``Encoder(table_size).encode([(name, value)]) ->
bytes``, ``set_peer_table_size(n)``; ``HpackError`` (a compression error: the connection
ends with COMPRESSION_ERROR) and its subclass ``HeaderListTooLarge`` (the whole block was
decoded, the dynamic table is consistent: the stream alone is refused, with 431).
"""
import hpack as _hpack


class HpackError(Exception):
    pass


class HeaderListTooLarge(HpackError):
    pass


class Decoder:
    __slots__ = ("_d", "max_header_list_size")

    def __init__(self, max_table_size=4096, max_header_list_size=65536):
        # The package raises mid-block past its own limit (the dynamic table is then out of
        # step): give it a hard cap well above ours, and check ours after the whole block.
        self._d = _hpack.Decoder(max_header_list_size=max(16 * max_header_list_size, 1 << 20))
        self._d.max_allowed_table_size = max_table_size
        self.max_header_list_size = max_header_list_size

    def set_max_table_size(self, n):
        self._d.max_allowed_table_size = n

    def decode(self, data):
        try:
            headers = self._d.decode(data, raw=True)
        except _hpack.HPACKError as e:
            raise HpackError(str(e)) from None
        except (ValueError, IndexError) as e:
            raise HpackError(str(e)) from None
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32      # RFC 9113 §6.5.2
        if size > self.max_header_list_size:
            raise HeaderListTooLarge("header list of %d bytes" % size)
        return [(bytes(n), bytes(v)) for n, v in headers]


class Encoder:
    __slots__ = ("_e",)

    def __init__(self, table_size=4096):
        self._e = _hpack.Encoder()
        self._e.header_table_size = table_size

    def set_peer_table_size(self, n):
        self._e.header_table_size = n

    def encode(self, headers):
        return self._e.encode(headers, huffman=True)
