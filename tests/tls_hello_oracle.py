"""The ClientHello SNI parser in plain Python: the oracle for engine/tlsio.pyx
parse_client_hello (the one pyroute runs per TLS connection)."""


def oracle_parse_client_hello(data):
    # the Python twin of engine/tlsio.pyx parse_client_hello (the test oracle)
    n = len(data)
    if n < 5:
        return False, 5
    if data[0] != 0x16:
        return True, None
    need = 5 + ((data[3] << 8) | data[4])
    if need > (5 + (1 << 14)):
        return True, None
    if n < need:
        return False, need
    return True, _oracle_sni(memoryview(data)[5:need])


def _oracle_sni(msg):
    # RFC 8446 §4.1.2 ClientHello; RFC 6066 §3 server_name. No server_name -> "", any
    # inconsistency -> None.
    if len(msg) < 4 or msg[0] != 1:
        return None
    body_len = (msg[1] << 16) | (msg[2] << 8) | msg[3]
    end = 4 + body_len
    if end > len(msg):
        return None   # hello spans several records: Traefik's sniffer reads one record only
    p = 4 + 2 + 32                                  # legacy_version, random
    if p >= end:
        return None
    p += 1 + msg[p]                                 # legacy_session_id
    if p + 2 > end:
        return None
    p += 2 + ((msg[p] << 8) | msg[p + 1])           # cipher_suites
    if p >= end:
        return None
    p += 1 + msg[p]                                 # legacy_compression_methods
    if p == end:
        return ""                                   # no extensions at all
    if p + 2 > end:
        return None
    ext_end = p + 2 + ((msg[p] << 8) | msg[p + 1])
    p += 2
    if ext_end > end:
        return None
    while p + 4 <= ext_end:
        etype = (msg[p] << 8) | msg[p + 1]
        elen = (msg[p + 2] << 8) | msg[p + 3]
        p += 4
        if p + elen > ext_end:
            return None
        if etype == 0:                               # server_name
            q = p + 2                                # skip server_name_list length
            stop = p + elen
            while q + 3 <= stop:
                ntype = msg[q]
                nlen = (msg[q + 1] << 8) | msg[q + 2]
                q += 3
                if q + nlen > stop:
                    return None
                if ntype == 0:                       # host_name
                    try:
                        return bytes(msg[q:q + nlen]).decode("ascii").strip().lower()
                    except UnicodeDecodeError:
                        return None
                q += nlen
            return None
        p += elen
    return "" if p == ext_end else None
