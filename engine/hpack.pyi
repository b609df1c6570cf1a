"""HPACK (RFC 7541) header compression for HTTP/2. Typed stub of engine/hpack.pyx."""
from typing import List, Sequence, Tuple, Union

from pyroute._engine.errors import EngineError

Header = Union[Tuple[bytes, bytes], Tuple[bytes, bytes, bool]]

DEFAULT_TABLE_SIZE: int              # 4096 (RFC 9113 §6.5.2)
DEFAULT_MAX_HEADER_LIST_SIZE: int    # 1 MiB (Go's http.DefaultMaxHeaderBytes)
STATIC_TABLE: Tuple[Tuple[bytes, bytes], ...]   # RFC 7541 Appendix A, index 1 first


class HpackError(EngineError):
    """A header block RFC 7541 forbids: connection error COMPRESSION_ERROR."""


class HeaderListTooLarge(HpackError):
    """The list is over max_header_list_size; the table is in sync (answer 431 / RST_STREAM)."""


def huffman_encode(data: bytes) -> bytes: ...
def huffman_decode(data: bytes) -> bytes: ...
def encode_integer(n: int, prefix: int) -> bytes: ...          # RFC 7541 §5.1
def decode_integer(data: bytes, prefix: int) -> Tuple[int, int]: ...   # (value, octets used)


class Decoder:
    max_header_list_size: int
    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = ...) -> None: ...
    def decode(self, block: bytes) -> List[Tuple[bytes, bytes]]: ...
    def set_max_table_size(self, n: int) -> None: ...
    @property
    def table(self) -> List[Tuple[bytes, bytes]]: ...   # newest (index 62) first
    @property
    def table_size(self) -> int: ...
    @property
    def max_table_size(self) -> int: ...


class Encoder:
    def __init__(self, table_size: int = 4096) -> None: ...
    def encode(self, headers: List[Header]) -> bytes: ...
    def set_peer_table_size(self, n: int) -> None: ...
    @property
    def table(self) -> List[Tuple[bytes, bytes]]: ...
    @property
    def table_size(self) -> int: ...
    @property
    def max_table_size(self) -> int: ...
