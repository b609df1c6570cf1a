# Stub for pyroute._engine.rules (Cython); re-exported by pyroute.rules.
from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

Text = Union[str, bytes]
HeaderList = Optional[Sequence[Tuple[Text, Text]]]

V3_MATCHERS: dict
V2_MATCHERS: dict
MAX_USER_PRIORITY: int  # MaxInt64 - 1000: Traefik reserves the priorities above

def matcher_spellings(syntax: str = "v3") -> dict[str, str]:
    """Every accepted spelling of a matcher name -> its canonical name."""

def go_regexp(pattern: str) -> object:
    """A compiled RE2 regexp with Go's regexp.Compile semantics and its capture groups (a
    google-re2 object); raises ValueError."""

def compile_rule(rule: str, syntax: str = "v3") -> Rule:
    """Parse and compile a rule; raises RuleSyntaxError (a ValueError)."""

def parse_domains(rule: str, syntax: str = "v3") -> list[str]:
    """Hosts of the rule's un-negated Host matchers, lower-cased, in rule order (Traefik's
    ParseDomains; HostRegexp and v2 HostHeader are not counted)."""

class Rule:
    rule: str
    syntax: str                  # "v3" or "v2"
    priority: int                # Traefik's default priority: len(rule) in UTF-8 bytes, minus 2
                                 # per un-negated Host(`**.x`)
    domains: list[str]           # parse_domains(rule, syntax)
    host_keys: Optional[frozenset[bytes]]   # exact hosts it can only match (index keys), or None
    wildcard_keys: Optional[frozenset[bytes]]  # parents of its "*.parent" hosts, or None
    uses_headers: bool
    uses_query: bool
    uses_client_ip: bool
    def matches(self, method: Text = "GET", host: Optional[Text] = None, path: Text = "/",
                query: Optional[Text] = "", headers: HeaderList = None,
                remote_addr: Optional[Text] = None, tls: bool = False) -> bool:
        """path/query raw as on the wire (path may be absolute-form: its authority is the host);
        host None = no Host header; remote_addr "ip:port" (or a bare ip); tls is ignored."""

class RouteTable:
    names: list[str]             # constructor order
    priorities: list[int]        # effective priority per route (constructor order)
    needs_headers: bool          # some rule reads headers: build the headers list
    needs_query: bool            # some rule reads the query
    needs_client_ip: bool        # some rule reads the peer IP
    def __init__(self, routes: Iterable[Union[Tuple[str, Union[str, Rule], int],
                                              Tuple[str, Union[str, Rule], int, str]]] = (),
                 syntax: str = "v3", index: bool = True, finish: bool = True) -> None:
        """(name, rule, priority[, syntax]), the rule a text or a compiled Rule; priority 0 =
        default. Order: priority descending, then name ascending, then constructor position.
        Raises RuleSyntaxError (with .router set) or ValueError (priority above
        MAX_USER_PRIORITY). finish=False: built in stages, add() then finish() before use."""
    def add(self, routes: Iterable[Union[Tuple[str, Union[str, Rule], int],
                                         Tuple[str, Union[str, Rule], int, str]]]) -> None:
        """More routes, for a table made with finish=False."""
    def finish(self) -> None:
        """Sort and index the routes added; immutable from here on."""
    def finish_steps(self, step: int = ...) -> Iterator[None]:
        """finish() as a generator, ``step`` rows a step; use the table once exhausted."""
    def __len__(self) -> int: ...
    def match(self, method: Text = "GET", host: Optional[Text] = None, path: Text = "/",
              query: Optional[Text] = "", headers: HeaderList = None,
              remote_addr: Optional[Text] = None, tls: bool = False) -> Optional[str]:
        """Name of the router the request reaches, or None (Traefik: 404)."""
    def match_all(self, method: Text = "GET", host: Optional[Text] = None, path: Text = "/",
                  query: Optional[Text] = "", headers: HeaderList = None,
                  remote_addr: Optional[Text] = None, tls: bool = False) -> list[str]:
        """Names of every matching router, winner first (for `pyroute explain`)."""
    def route(self, method: bytes, host: Optional[bytes], path: bytes, query: Optional[bytes],
              headers: Optional[list[Tuple[bytes, bytes]]], remote_ip: Optional[bytes],
              tls: bool) -> int:
        """Server fast path: constructor index of the winner, -1 none (404), -2 bad
        percent-encoding in the path (Traefik: 400). host raw Host value; remote_ip the peer IP
        as text, no port (IPv6 without brackets; a %zone is ignored)."""
    def rule(self, index: int) -> Rule: ...
    def order(self) -> list[int]:
        """Constructor indices in matching order."""
