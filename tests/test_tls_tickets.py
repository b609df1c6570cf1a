"""Session ticket keys as Go's crypto/tls rotates them (Traefik's TLS): a new key every 24 h,
each key accepted for 7 days, the first key encrypting and the others only decrypting. Over
real handshakes with a stdlib-ssl client (TLS 1.2 tickets and TLS 1.3 stateless PSKs), with
the ring's clock moved by ``rotate_ticket_keys(now=...)`` (the periods are Go's own)."""
import ssl
import time

import pytest
import trustme

from pyroute import tls
from pyroute._engine import tlsio
from _tls_harness import Server, certificate_entry, client_context, fetch

DAY = 24 * 3600
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture()
def server(ca):
    leaf = ca.issue_cert("*.example.com")
    config = tls.TLSConfig.build({"certificates": [certificate_entry(leaf)]}, {})
    assert tlsio.ticket_periods() == (DAY, 7 * DAY)
    with Server(config) as srv:
        yield srv
    tlsio.reset_ticket_keys()      # leave a fresh ring for the tests that follow
    tlsio.rotate_ticket_keys()


def resumes(srv, ctx, session):
    _, body, peer = fetch(srv.port, ctx, "a.example.com", session=session)
    assert body["resumed"] is peer.session_reused
    return peer.session_reused


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_rotated_key_still_decrypts_until_its_lifetime_ends(ca, server, version):
    now = int(time.time())
    tlsio.reset_ticket_keys()
    assert tlsio.rotate_ticket_keys(now=now - 3 * DAY)        # key A, made 3 days ago
    ctx = client_context(ca, maximum=version)
    _, _, first = fetch(server.port, ctx, "a.example.com")
    assert not first.session_reused
    assert resumes(server, ctx, first.session)
    # within 24 h of A nothing rotates; 24 h on, key B is made and encrypts from then on
    assert not tlsio.rotate_ticket_keys(now=now - 3 * DAY + DAY - 1)
    assert tlsio.rotate_ticket_keys(now=now)
    assert tlsio.ticket_key_ages(now=now) == [0, 3 * DAY]
    # A only decrypts now: its ticket still resumes (Go: the rest of the keys decrypt)
    assert resumes(server, ctx, first.session)
    _, _, second = fetch(server.port, ctx, "a.example.com")   # a ticket under key B
    assert resumes(server, ctx, second.session)
    # 7 days after A was made (Go's ticketKeyLifetime) the master drops it: A's tickets no
    # longer resume (a full handshake), B's still do
    assert tlsio.rotate_ticket_keys(now=now + 4 * DAY)
    assert tlsio.ticket_key_ages(now=now + 4 * DAY) == [0, 4 * DAY]   # C made, A gone
    assert not resumes(server, ctx, first.session)
    assert resumes(server, ctx, second.session)


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_ticket_past_the_acceptance_window_is_not_resumed(ca, server, version):
    # The handshake checks a key's age itself: a key that passed 7 days is refused even if
    # the master has not dropped it yet (and no ticket is issued under it).
    now = int(time.time())
    tlsio.reset_ticket_keys()
    tlsio.rotate_ticket_keys(now=now - 7 * DAY + 2)           # expires in 2 s
    ctx = client_context(ca, maximum=version)
    _, _, first = fetch(server.port, ctx, "a.example.com")
    assert first.session is not None and first.session.has_ticket
    assert resumes(server, ctx, first.session)
    time.sleep(2.5)
    assert tlsio.ticket_key_ages()[0] >= 7 * DAY
    assert not resumes(server, ctx, first.session)
    # expired and the only key: tickets are no longer issued at all until a rotation
    _, _, later = fetch(server.port, ctx, "a.example.com")
    assert not resumes(server, ctx, later.session)
    assert tlsio.rotate_ticket_keys()
    _, _, fresh = fetch(server.port, ctx, "a.example.com")
    assert resumes(server, ctx, fresh.session)


def test_rotation_ring_keeps_go_periods():
    # 24 h rotation, 7-day lifetime: after a week of daily rotations, 7 keys are live
    # (the oldest made 6 days ago), never more
    now = int(time.time())
    tlsio.reset_ticket_keys()
    try:
        for day in range(20):
            tlsio.rotate_ticket_keys(now=now + day * DAY)
        assert tlsio.ticket_key_ages(now=now + 19 * DAY) == [d * DAY for d in range(7)]
    finally:
        tlsio.reset_ticket_keys()
        tlsio.rotate_ticket_keys()
