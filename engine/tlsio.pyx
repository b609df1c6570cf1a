# cython: language_level=3
"""A server-side TLS connection in C: contexts, handshake steps, reads, writes, ticket keys.

TLS runs on the system OpenSSL (libssl.so.3), the one Python's own ``ssl`` module is linked
against, not on the OpenSSL that the ``cryptography`` wheel carries statically: that copy
exports no symbol, and its cffi bindings (what pyOpenSSL calls) have no way to set session
ticket keys (no ``SSL_CTX_ctrl``, no ticket key callback, no EVP cipher or MAC calls), which
Go-style ticket key rotation shared by every worker needs. So the contexts pyroute.tls builds
and the connections made on them are this module's ``Context`` and ``Connection``: thin typed
wrappers whose method names are pyOpenSSL's (what pyroute.tls, the access log, metrics and
passTLSClientCert call), with certificates and keys handed over as DER from ``cryptography``.

``TLSStream`` has a socket's face for code written for plain sockets (engine/conn.pyx):
``recv_into`` returns 0 at EOF (close_notify or not) and raises BlockingIOError when it would
block (either way round: TLS may need to write to read); ``send`` likewise. A handshake step,
a read or a write is one direct C call, no Python frame per would-block. Failures (rare) are
turned into exceptions by the hooks pyroute.tls installs with :func:`bind`.

Session tickets (Go's crypto/tls, which Traefik uses): the first key of a ring encrypts new
tickets, the others only decrypt; the master adds a key every ``rotation`` (24 h) and a key is
accepted for ``lifetime`` (7 days) after it was made. The ring lives in one anonymous
``MAP_SHARED`` page made at import (in the master, before any fork), so every worker, and every
context of every TLS option, encrypts and decrypts with the same keys: a ticket issued by one
worker resumes on another, across reloads, and rotation needs no restart. Readers take a
seqlock snapshot (the writer is the master, once a day); the key check runs in C per handshake.
"""
cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcpy, memcmp, memset
from libc.errno cimport errno
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

cdef extern from "sys/mman.h" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_ANONYMOUS
    void *MAP_FAILED

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX:
        pass
    ctypedef struct SSL:
        pass
    ctypedef struct SSL_METHOD:
        pass
    ctypedef struct SSL_CIPHER:
        pass
    ctypedef struct X509:
        pass
    ctypedef struct X509_STORE:
        pass
    ctypedef struct X509_STORE_CTX:
        pass
    ctypedef struct EVP_PKEY:
        pass
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    ctypedef struct EVP_MAC_CTX:
        pass
    ctypedef struct OSSL_PARAM:
        pass
    ctypedef struct OPENSSL_STACK "struct stack_st_X509":
        pass

    const SSL_METHOD *TLS_server_method()
    SSL_CTX *SSL_CTX_new(const SSL_METHOD *)
    void SSL_CTX_free(SSL_CTX *)
    int SSL_CTX_set_min_proto_version(SSL_CTX *, int)
    int SSL_CTX_set_max_proto_version(SSL_CTX *, int)
    uint64_t SSL_CTX_set_options(SSL_CTX *, uint64_t)
    uint64_t SSL_CTX_get_options(const SSL_CTX *)
    long SSL_CTX_set_mode(SSL_CTX *, long)
    int SSL_CTX_set_cipher_list(SSL_CTX *, const char *)
    int SSL_CTX_set1_curves_list(SSL_CTX *, const char *)
    X509_STORE *SSL_CTX_get_cert_store(const SSL_CTX *)
    int SSL_CTX_add_client_CA(SSL_CTX *, X509 *)
    void SSL_CTX_set_verify(SSL_CTX *, int, int (*)(int, X509_STORE_CTX *) noexcept nogil)
    int SSL_CTX_set_session_id_context(SSL_CTX *, const unsigned char *, unsigned int)
    long SSL_CTX_set_session_cache_mode(SSL_CTX *, long)
    long SSL_CTX_set_timeout(SSL_CTX *, long)
    int SSL_CTX_set_num_tickets(SSL_CTX *, size_t)
    void SSL_CTX_set_read_ahead(SSL_CTX *, int)
    void SSL_CTX_set_alpn_select_cb(SSL_CTX *, int (*)(SSL *, const unsigned char **,
                                    unsigned char *, const unsigned char *, unsigned int,
                                    void *) noexcept nogil, void *)
    long SSL_CTX_set_tlsext_servername_callback(SSL_CTX *, int (*)(SSL *, int *, void *) noexcept nogil)
    int SSL_CTX_set_tlsext_ticket_key_evp_cb(SSL_CTX *, int (*)(SSL *, unsigned char *,
                                             unsigned char *, EVP_CIPHER_CTX *, EVP_MAC_CTX *,
                                             int) noexcept nogil)
    int SSL_CTX_use_certificate(SSL_CTX *, X509 *)
    long SSL_CTX_add_extra_chain_cert(SSL_CTX *, X509 *)
    int SSL_CTX_use_PrivateKey(SSL_CTX *, EVP_PKEY *)
    int SSL_CTX_check_private_key(const SSL_CTX *)

    SSL *SSL_new(SSL_CTX *)
    void SSL_free(SSL *)
    int SSL_set_fd(SSL *, int)
    void SSL_set_accept_state(SSL *)
    SSL_CTX *SSL_set_SSL_CTX(SSL *, SSL_CTX *)
    int SSL_get_ex_new_index(long, void *, void *, void *, void *)
    int SSL_set_ex_data(SSL *, int, void *)
    void *SSL_get_ex_data(const SSL *, int)
    int SSL_do_handshake(SSL *)
    int SSL_read(SSL *, void *, int)
    int SSL_write(SSL *, const void *, int)
    int SSL_get_error(const SSL *, int)
    int SSL_shutdown(SSL *)
    int SSL_session_reused(const SSL *)
    const char *SSL_get_servername(const SSL *, int)
    const char *SSL_get_version(const SSL *)
    const SSL_CIPHER *SSL_get_current_cipher(const SSL *)
    const char *SSL_CIPHER_get_name(const SSL_CIPHER *)
    void SSL_get0_alpn_selected(const SSL *, const unsigned char **, unsigned int *)
    X509 *SSL_get1_peer_certificate(const SSL *)
    OPENSSL_STACK *SSL_get_peer_cert_chain(const SSL *)
    int SSL_get_negotiated_group(SSL *)
    const char *SSL_group_to_name(SSL *, int)
    const char *SSL_get_cipher_list(const SSL *, int)
    int SSL_version(const SSL *)

    int SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, SSL_ERROR_ZERO_RETURN, SSL_ERROR_SYSCALL
    int SSL_ERROR_SSL
    int SSL_TLSEXT_ERR_OK, SSL_TLSEXT_ERR_NOACK, SSL_TLSEXT_ERR_ALERT_FATAL
    int TLSEXT_NAMETYPE_host_name
    int SSL_VERIFY_NONE, SSL_VERIFY_PEER, SSL_VERIFY_FAIL_IF_NO_PEER_CERT
    uint64_t SSL_OP_NO_COMPRESSION, SSL_OP_NO_RENEGOTIATION, SSL_OP_CIPHER_SERVER_PREFERENCE
    uint64_t SSL_OP_NO_TICKET
    long SSL_MODE_RELEASE_BUFFERS, SSL_MODE_ENABLE_PARTIAL_WRITE
    long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
    long SSL_SESS_CACHE_OFF
    int C_TLS1_VERSION "TLS1_VERSION"
    int C_TLS1_1_VERSION "TLS1_1_VERSION"
    int C_TLS1_2_VERSION "TLS1_2_VERSION"
    int C_TLS1_3_VERSION "TLS1_3_VERSION"
    int OPENSSL_VERSION
    const char *OpenSSL_version(int)

cdef extern from "openssl/x509.h" nogil:
    X509 *d2i_X509(X509 **, const unsigned char **, long)
    int i2d_X509(X509 *, unsigned char **)
    void X509_free(X509 *)
    int X509_STORE_add_cert(X509_STORE *, X509 *)
    int sk_X509_num(OPENSSL_STACK *)
    X509 *sk_X509_value(OPENSSL_STACK *, int)
    EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **, const unsigned char **, long)
    void EVP_PKEY_free(EVP_PKEY *)

cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_get_error()
    void ERR_clear_error()
    const char *ERR_lib_error_string(unsigned long)
    const char *ERR_reason_error_string(unsigned long)

cdef extern from "openssl/evp.h" nogil:
    const EVP_CIPHER *EVP_aes_128_cbc()
    int EVP_EncryptInit_ex(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *,
                           const unsigned char *)
    int EVP_DecryptInit_ex(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *,
                           const unsigned char *)
    int EVP_MAC_CTX_set_params(EVP_MAC_CTX *, const OSSL_PARAM *)
    unsigned char *SHA512(const unsigned char *, size_t, unsigned char *)

cdef extern from "openssl/params.h" nogil:
    OSSL_PARAM OSSL_PARAM_construct_octet_string(const char *, void *, size_t)
    OSSL_PARAM OSSL_PARAM_construct_utf8_string(const char *, char *, size_t)
    OSSL_PARAM OSSL_PARAM_construct_end()

cdef extern from "openssl/rand.h" nogil:
    int RAND_bytes(unsigned char *, int)
    int RAND_priv_bytes(unsigned char *, int)


# ---- constants (pyOpenSSL's names) -------------------------------------------------------

TLS1_VERSION = C_TLS1_VERSION
TLS1_1_VERSION = C_TLS1_1_VERSION
TLS1_2_VERSION = C_TLS1_2_VERSION
TLS1_3_VERSION = C_TLS1_3_VERSION
OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION
OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION
OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE
OP_NO_TICKET = SSL_OP_NO_TICKET
MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS
SESS_CACHE_OFF = SSL_SESS_CACHE_OFF
VERIFY_NONE = SSL_VERIFY_NONE
VERIFY_PEER = SSL_VERIFY_PEER
VERIFY_FAIL_IF_NO_PEER_CERT = SSL_VERIFY_FAIL_IF_NO_PEER_CERT
# an ALPN select callback's answer: the client's list has nothing we serve, go on without ALPN
NO_OVERLAPPING_PROTOCOLS = object()

# handshake() results (pyroute.tls: WANT_READ / WANT_WRITE)
DONE = 0
WANT_READ = 1
WANT_WRITE = 2

cdef int MAX_PLAINTEXT = 1 << 14   # one TLS record's plaintext (RFC 8446 §5.1)


class Error(Exception):
    """OpenSSL refused something; the message is its error queue ("lib: reason; ...")."""


def openssl_version():
    return OpenSSL_version(OPENSSL_VERSION).decode()


cdef str _errors():
    # drain OpenSSL's error queue into one line (what pyOpenSSL's SSL.Error showed)
    cdef unsigned long e
    cdef const char *lib
    cdef const char *reason
    parts = []
    while True:
        e = ERR_get_error()
        if e == 0:
            break
        lib = ERR_lib_error_string(e)
        reason = ERR_reason_error_string(e)
        parts.append("%s: %s" % ((<bytes> lib).decode() if lib != NULL else "?",
                                 (<bytes> reason).decode() if reason != NULL
                                 else "error %x" % e))
    return "; ".join(parts)


cdef int _check(int ok) except -1:
    if ok <= 0:
        raise Error(_errors() or "OpenSSL call failed")
    return 0


# ---- session ticket keys: a ring shared by every process -----------------------------------

DEF MAX_KEYS = 16          # 7 days / 24 h + the current one, with room for shorter rotations

ctypedef struct TicketKey:
    unsigned char name[16]
    unsigned char aes[16]
    unsigned char hmac[32]
    int64_t created        # unix seconds

ctypedef struct TicketRing:
    uint64_t seq           # seqlock: odd while the master writes
    int count
    int64_t rotation       # seconds between new keys (Go: ticketKeyRotation, 24 h)
    int64_t lifetime       # seconds a key decrypts for (Go: ticketKeyLifetime, 7 days)
    TicketKey keys[MAX_KEYS]   # keys[0] encrypts; newest first

cdef TicketRing *_ring = NULL


cdef void _make_ring() except *:
    global _ring
    cdef void *p = mmap(NULL, sizeof(TicketRing), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0)
    if p == MAP_FAILED:
        raise OSError(errno, "cannot map the session ticket key ring")
    _ring = <TicketRing *> p
    memset(_ring, 0, sizeof(TicketRing))
    _ring.rotation = 24 * 3600
    _ring.lifetime = 7 * 24 * 3600

_make_ring()


cdef inline int64_t _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec


cdef void _derive(TicketKey *key, const unsigned char *secret) noexcept nogil:
    # Go's ticketKeyFromBytes: SHA-512 of a 32-byte secret -> name, AES key, HMAC key
    cdef unsigned char h[64]
    SHA512(secret, 32, h)
    memcpy(key.name, h, 16)
    memcpy(key.aes, h + 16, 16)
    memcpy(key.hmac, h + 32, 32)


cdef inline void _write_begin() noexcept nogil:
    __atomic_fetch_add(&_ring.seq, 1, __ATOMIC_ACQ_REL)


cdef inline void _write_end() noexcept nogil:
    __atomic_fetch_add(&_ring.seq, 1, __ATOMIC_ACQ_REL)


cdef extern from *:
    """
    #define _pr_atomic_load(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define _pr_fence() __atomic_thread_fence(__ATOMIC_ACQUIRE)
    """
    uint64_t _pr_atomic_load(uint64_t *) nogil
    void _pr_fence() nogil
    uint64_t __atomic_fetch_add(uint64_t *, uint64_t, int) nogil
    int __ATOMIC_ACQ_REL


cdef int _snapshot(TicketRing *copy) noexcept nogil:
    # a consistent copy of the ring (seqlock read): 0 keys when the master never made one
    cdef uint64_t before, after
    cdef int tries
    for tries in range(1000):
        before = _pr_atomic_load(&_ring.seq)
        if before & 1:
            continue
        memcpy(copy, _ring, sizeof(TicketRing))
        _pr_fence()
        after = _pr_atomic_load(&_ring.seq)
        if before == after:
            return 1
    copy.count = 0
    return 0


def ticket_periods(rotation=None, lifetime=None):
    """Set (and return) the ring's periods in seconds: Go's 24 h and 7 days by default; shorter
    ones are for tests only (no configuration field sets them, as none does in Traefik)."""
    if rotation is not None or lifetime is not None:
        _write_begin()
        if rotation is not None:
            _ring.rotation = <int64_t> rotation
        if lifetime is not None:
            _ring.lifetime = <int64_t> lifetime
        _write_end()
    return _ring.rotation, _ring.lifetime


def rotate_ticket_keys(now=None):
    """The master's part, called from its loop: as Go's ticketKeys, add a new first key when
    there is none or the first is ``rotation`` old, and drop the keys past ``lifetime``.
    Returns True when the ring changed."""
    cdef int64_t t = _now() if now is None else <int64_t> now
    cdef unsigned char secret[32]
    cdef int i, kept
    cdef bint add = _ring.count == 0 or t - _ring.keys[0].created >= _ring.rotation
    cdef bint drop = False
    for i in range(_ring.count):
        if t - _ring.keys[i].created >= _ring.lifetime:
            drop = True
    if not add and not drop:
        return False
    if add and RAND_priv_bytes(secret, 32) != 1:
        ERR_clear_error()
        raise Error("cannot draw a session ticket key")
    _write_begin()
    kept = 0
    for i in range(_ring.count):
        if t - _ring.keys[i].created < _ring.lifetime:
            _ring.keys[kept] = _ring.keys[i]
            kept += 1
    if add:
        if kept == MAX_KEYS:
            kept -= 1
        for i in range(kept, 0, -1):
            _ring.keys[i] = _ring.keys[i - 1]
        _derive(&_ring.keys[0], secret)
        _ring.keys[0].created = t
        kept += 1
    _ring.count = kept
    _write_end()
    memset(secret, 0, 32)
    return True


def reset_ticket_keys():
    """Forget every key (tests: start a ring from a known state; rotate_ticket_keys next)."""
    _write_begin()
    _ring.count = 0
    _write_end()


# The first key, made by whichever process imports this first: the master, before it forks
# (pyroute.server.master rotates from then on), or a process serving TLS on its own.
rotate_ticket_keys()


def ticket_key_ages(now=None):
    """The ring's key ages in seconds, the encrypting key first (for tests and the log)."""
    cdef TicketRing copy
    cdef int64_t t = _now() if now is None else <int64_t> now
    _snapshot(&copy)
    return [t - copy.keys[i].created for i in range(copy.count)]


cdef char *_SHA256 = b"SHA256"


cdef int _ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                    EVP_MAC_CTX *hctx, int enc) noexcept nogil:
    # OpenSSL's ticket key callback (TLS 1.2 tickets and TLS 1.3 stateless PSKs alike).
    # enc: 1 to issue (fill name and iv, init both contexts; 1 = done, -1 = failure -> no
    # ticket); 0 to open a ticket: 0 = unknown or expired key (a full handshake, a new ticket),
    # 1 = good, 2 = good but issue a new one with the current key (Go does the same).
    cdef TicketRing ring
    cdef TicketKey *key = NULL
    cdef int i
    cdef int64_t t = _now()
    cdef OSSL_PARAM params[3]
    _snapshot(&ring)
    if enc:
        if ring.count == 0 or t - ring.keys[0].created >= ring.lifetime:
            return 0        # no usable key (never rotated): no ticket, the handshake goes on
        key = &ring.keys[0]
        if RAND_bytes(iv, 16) != 1:
            return -1
        memcpy(name, key.name, 16)
    else:
        for i in range(ring.count):
            if memcmp(name, ring.keys[i].name, 16) == 0:
                if t - ring.keys[i].created >= ring.lifetime:
                    return 0
                key = &ring.keys[i]
                break
        if key == NULL:
            return 0
    params[0] = OSSL_PARAM_construct_octet_string(b"key", key.hmac, 32)
    params[1] = OSSL_PARAM_construct_utf8_string(b"digest", _SHA256, 0)
    params[2] = OSSL_PARAM_construct_end()
    if EVP_MAC_CTX_set_params(hctx, params) != 1:
        return -1 if enc else 0
    if enc:
        if EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, key.aes, iv) != 1:
            return -1
        return 1
    if EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, key.aes, iv) != 1:
        return 0
    return 1 if key == &ring.keys[0] else 2


# ---- contexts ----------------------------------------------------------------------------

cdef int _conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL)


cdef int _verify_any(int ok, X509_STORE_CTX *store) noexcept nogil:
    # RequestClientCert / RequireAnyClientCert: Go asks for a certificate, does not verify it
    return 1


cdef int _alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                  const unsigned char *inp, unsigned int inlen, void *arg) noexcept with gil:
    cdef Connection conn = <Connection> SSL_get_ex_data(ssl, _conn_index)
    cdef unsigned int i = 0, n
    cdef bytes chosen
    try:
        offered = []
        while i < inlen:
            n = inp[i]
            if i + 1 + n > inlen:
                break
            offered.append((<const char *> inp)[i + 1:i + 1 + n])
            i += 1 + n
        result = conn._ctx.alpn_select(conn, offered)
        if result is NO_OVERLAPPING_PROTOCOLS:
            return SSL_TLSEXT_ERR_NOACK
        chosen = bytes(result)
        conn._alpn = chosen            # OpenSSL keeps the pointer until it copies it
        out[0] = <const unsigned char *> (<char *> chosen)
        outlen[0] = <unsigned char> len(chosen)
        return SSL_TLSEXT_ERR_OK
    except BaseException as exc:
        conn.callback_error = exc
        return SSL_TLSEXT_ERR_ALERT_FATAL


cdef int _servername_cb(SSL *ssl, int *alert, void *arg) noexcept with gil:
    cdef Connection conn = <Connection> SSL_get_ex_data(ssl, _conn_index)
    try:
        conn._ctx.servername(conn)
    except BaseException as exc:
        conn.callback_error = exc
        return SSL_TLSEXT_ERR_ALERT_FATAL
    return SSL_TLSEXT_ERR_OK


cdef X509 *_x509(der) except NULL:
    cdef const unsigned char *p = der
    cdef X509 *x = d2i_X509(NULL, &p, len(der))
    if x == NULL:
        raise Error(_errors() or "not a DER certificate")
    return x


cdef _der_of(X509 *x):
    cdef unsigned char *buf = NULL
    cdef int n = i2d_X509(x, &buf)
    if n <= 0:
        raise Error(_errors() or "cannot encode a certificate")
    try:
        return (<char *> buf)[:n]
    finally:
        CRYPTO_free(buf, NULL, 0)

cdef extern from "openssl/crypto.h" nogil:
    void CRYPTO_free(void *, const char *, int)


@cython.final
cdef class Context:
    """A server SSL_CTX (pyOpenSSL's ``SSL.Context`` methods that pyroute.tls uses).
    Certificates and keys come as ``cryptography`` objects (or DER). Every context resumes
    with the shared ticket key ring."""

    cdef SSL_CTX *ctx
    cdef readonly object alpn_select      # f(conn, offered list) -> bytes or NO_OVERLAPPING_...
    cdef readonly object servername       # f(conn), from the SNI extension
    cdef object _keep

    def __cinit__(self):
        self.ctx = SSL_CTX_new(TLS_server_method())
        if self.ctx == NULL:
            raise Error(_errors() or "cannot make an SSL_CTX")
        self._keep = []
        # what TLSStream.send relies on (pyOpenSSL sets the same): SSL_write returns after
        # each record, and a retried write may pass the rest from a new address
        SSL_CTX_set_mode(self.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        SSL_CTX_set_tlsext_ticket_key_evp_cb(self.ctx, _ticket_cb)
        # Go accepts a ticket for 7 days (maxSessionTicketLifetime) and tells TLS 1.3 clients
        # so; OpenSSL's default (300 s) would end sessions long before the key expires
        SSL_CTX_set_timeout(self.ctx, 7 * 24 * 3600)
        # Go's TLS 1.3 server sends one NewSessionTicket per handshake (OpenSSL's default is
        # two): one ticket encrypted and written per handshake, not two
        SSL_CTX_set_num_tickets(self.ctx, 1)
        # Read ahead, as nginx does: one read() takes whatever has arrived (a record's header
        # and body, the client's Finished and its first request together) instead of a read
        # per header and per body (bench/results/tls-syscalls-20261203.txt: 9.9 reads per
        # handshake without, nginx 4.0). Safe on edge-triggered epoll because every reader
        # (ClientConn, H2Conn, the handshake's Sniffer) reads on until OpenSSL says
        # want-read, and a paused reader resumes by reading, never by waiting for an edge:
        # bytes OpenSSL holds are never forgotten.
        SSL_CTX_set_read_ahead(self.ctx, 1)

    def __dealloc__(self):
        if self.ctx != NULL:
            SSL_CTX_free(self.ctx)

    def set_min_proto_version(self, int version):
        _check(SSL_CTX_set_min_proto_version(self.ctx, version))

    def set_max_proto_version(self, int version):
        _check(SSL_CTX_set_max_proto_version(self.ctx, version))

    def set_options(self, uint64_t options):
        return SSL_CTX_set_options(self.ctx, options)

    def get_options(self):
        return SSL_CTX_get_options(self.ctx)

    def set_mode(self, long mode):
        return SSL_CTX_set_mode(self.ctx, mode)

    def set_cipher_list(self, bytes ciphers):
        _check(SSL_CTX_set_cipher_list(self.ctx, ciphers))

    def set1_curves_list(self, bytes curves):
        """True when OpenSSL took the list (the error queue is left empty either way)."""
        ok = SSL_CTX_set1_curves_list(self.ctx, curves) == 1
        ERR_clear_error()
        return ok

    def add_client_ca(self, cert):
        """Trust ``cert`` (a cryptography certificate) for client certificates and name it in
        the CertificateRequest (Go: ClientCAs)."""
        cdef X509 *x = _x509(_der(cert))
        try:
            _check(X509_STORE_add_cert(SSL_CTX_get_cert_store(self.ctx), x))
            _check(SSL_CTX_add_client_CA(self.ctx, x))
        finally:
            X509_free(x)

    def set_verify(self, int mode, bint accept_any=False):
        if accept_any:
            SSL_CTX_set_verify(self.ctx, mode, _verify_any)
        else:
            SSL_CTX_set_verify(self.ctx, mode, NULL)

    def set_session_id(self, bytes sid):
        _check(SSL_CTX_set_session_id_context(self.ctx, sid, len(sid)))

    def set_session_cache_mode(self, long mode):
        return SSL_CTX_set_session_cache_mode(self.ctx, mode)

    def set_alpn_select_callback(self, callback):
        self.alpn_select = callback
        SSL_CTX_set_alpn_select_cb(self.ctx, _alpn_cb, NULL)

    def set_tlsext_servername_callback(self, callback):
        self.servername = callback
        SSL_CTX_set_tlsext_servername_callback(self.ctx, _servername_cb)

    def use_certificate(self, cert):
        cdef X509 *x = _x509(_der(cert))
        try:
            _check(SSL_CTX_use_certificate(self.ctx, x))
        finally:
            X509_free(x)

    def add_extra_chain_cert(self, cert):
        cdef X509 *x = _x509(_der(cert))
        if SSL_CTX_add_extra_chain_cert(self.ctx, x) != 1:   # takes x on success
            X509_free(x)
            raise Error(_errors() or "cannot add a chain certificate")

    def use_privatekey(self, key):
        from cryptography.hazmat.primitives import serialization
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        cdef const unsigned char *p = der
        cdef EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &p, len(der))
        if k == NULL:
            raise Error(_errors() or "not a private key")
        try:
            _check(SSL_CTX_use_PrivateKey(self.ctx, k))
        finally:
            EVP_PKEY_free(k)

    def check_privatekey(self):
        _check(SSL_CTX_check_private_key(self.ctx))

    def cipher_list(self):
        """The TLS 1.2 (and below) suites this context would offer, by OpenSSL name."""
        cdef SSL *ssl = SSL_new(self.ctx)
        cdef const char *name
        cdef int i = 0
        out = []
        if ssl == NULL:
            raise Error(_errors() or "cannot make an SSL")
        try:
            while True:
                name = SSL_get_cipher_list(ssl, i)
                if name == NULL:
                    break
                out.append((<bytes> name).decode())
                i += 1
        finally:
            SSL_free(ssl)
        return out


cdef bytes _der(cert):
    if isinstance(cert, (bytes, bytearray)):
        return bytes(cert)
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.DER)


@cython.final
cdef class Connection:
    """A server SSL on a socket (pyOpenSSL's ``SSL.Connection`` methods that pyroute calls)."""

    cdef SSL *ssl
    cdef readonly Context _ctx
    cdef object _app_data
    cdef bytes _alpn
    cdef public object callback_error     # what an ALPN or SNI callback raised
    cdef object _sock
    cdef object __weakref__               # per-connection caches (passTLSClientCert) are weak

    def __cinit__(self, Context context, sock):
        self.ssl = SSL_new(context.ctx)
        if self.ssl == NULL:
            raise Error(_errors() or "cannot make an SSL")
        self._ctx = context
        self._sock = sock
        SSL_set_ex_data(self.ssl, _conn_index, <void *> self)
        if sock is not None:
            _check(SSL_set_fd(self.ssl, sock.fileno()))

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)

    def set_app_data(self, data):
        self._app_data = data

    def get_app_data(self):
        return self._app_data

    def set_accept_state(self):
        SSL_set_accept_state(self.ssl)

    def set_context(self, Context context):
        """Serve with ``context`` from now on (its certificate, verification, ALPN); sessions
        stay with the context the connection was made on, as OpenSSL's SSL_set_SSL_CTX does."""
        if SSL_set_SSL_CTX(self.ssl, context.ctx) == NULL:
            raise Error(_errors() or "cannot switch context")
        self._ctx = context

    def get_servername(self):
        cdef const char *name = SSL_get_servername(self.ssl, TLSEXT_NAMETYPE_host_name)
        return None if name == NULL else <bytes> name

    def get_protocol_version_name(self):
        return (<bytes> SSL_get_version(self.ssl)).decode()

    def get_cipher_name(self):
        cdef const SSL_CIPHER *c = SSL_get_current_cipher(self.ssl)
        return None if c == NULL else (<bytes> SSL_CIPHER_get_name(c)).decode()

    def get_alpn_proto_negotiated(self):
        cdef const unsigned char *p = NULL
        cdef unsigned int n = 0
        SSL_get0_alpn_selected(self.ssl, &p, &n)
        return b"" if p == NULL else (<const char *> p)[:n]

    def get_group_name(self):
        cdef int nid = SSL_get_negotiated_group(self.ssl)
        cdef const char *name
        if nid == 0:
            return None
        name = SSL_group_to_name(self.ssl, nid)
        return None if name == NULL else (<bytes> name).decode()

    def peer_certificate_der(self):
        """The client's certificate (DER), None when it sent none."""
        cdef X509 *x = SSL_get1_peer_certificate(self.ssl)
        if x == NULL:
            return None
        try:
            return _der_of(x)
        finally:
            X509_free(x)

    def peer_chain_der(self):
        """What the client sent after its own certificate (DER list; server side, OpenSSL's
        peer chain leaves the peer's certificate out)."""
        cdef OPENSSL_STACK *chain = SSL_get_peer_cert_chain(self.ssl)
        if chain == NULL:
            return []
        return [_der_of(sk_X509_value(chain, i)) for i in range(sk_X509_num(chain))]

    def get_peer_certificate(self, as_cryptography=False):
        """The client's certificate as a cryptography certificate (``as_cryptography``) or a
        pyOpenSSL X509 (what the access log reads the subject from); None when none."""
        der = self.peer_certificate_der()
        if der is None:
            return None
        from cryptography import x509
        cert = x509.load_der_x509_certificate(der)
        if as_cryptography:
            return cert
        from OpenSSL import crypto
        return crypto.X509.from_cryptography(cert)

    def session_reused(self):
        return bool(SSL_session_reused(self.ssl))


# Failure hooks (pyroute.tls.bind): called with (stream, OpenSSL error code, errno, error text)
# on the rare paths.
cdef object _handshake_failed = None   # raises the reason the handshake failed
cdef object _read_failed = None        # returns 0 (EOF) or raises OSError
cdef object _write_failed = None       # raises OSError
cdef object _server_name_of = None     # the SNI OpenSSL saw, when the peek read none


def bind(handshake_failed, read_failed, write_failed, server_name_of):
    """Install the hooks: ``f(stream, error, errno, text)`` for a handshake step, a read and a
    write that OpenSSL failed with something other than want-read/want-write (``error``:
    SSL_get_error's code, ``errno`` the socket's, ``text`` OpenSSL's error queue, drained);
    ``server_name_of(stream)`` once a handshake whose stream has no ``server_name`` is done."""
    global _handshake_failed, _read_failed, _write_failed, _server_name_of
    _handshake_failed = handshake_failed
    _read_failed = read_failed
    _write_failed = write_failed
    _server_name_of = server_name_of


ERROR_ZERO_RETURN = SSL_ERROR_ZERO_RETURN
ERROR_SYSCALL = SSL_ERROR_SYSCALL
ERROR_SSL = SSL_ERROR_SSL


@cython.final
@cython.freelist(64)
cdef class TLSStream:
    """A server ``Connection`` on a non-blocking socket, from the first handshake step to the
    close. ``server_name``: the SNI (trimmed, lower-cased; "" when none), as Go's
    ``req.TLS.ServerName`` feeds Traefik's SNICheck; ``option``: the TLS option's name."""

    cdef readonly Connection conn   # owns the SSL object
    cdef readonly object sock
    cdef readonly int fd
    cdef public str server_name
    cdef public str option
    cdef SSL *ssl                   # conn's, alive as long as conn
    # The last read could not go on before a write (SSL_read said want-write, the socket
    # buffer full): retry the read once writable. OpenSSL answers a KeyUpdate asking for one
    # back (RFC 8446 §4.6.3) with the next write, not from inside the read.
    cdef readonly bint read_wants_write

    def __init__(self, Connection conn, sock, str server_name, str option):
        self.conn = conn
        self.sock = sock
        self.fd = sock.fileno()
        self.server_name = server_name
        self.option = option
        self.ssl = conn.ssl

    def fileno(self):
        return self.fd

    def handshake(self):
        """Advance the handshake: DONE, or WANT_READ / WANT_WRITE for the event to wait for.
        A failure raises what the bound hook raises (pyroute.tls.TLSRefused)."""
        cdef int result = SSL_do_handshake(self.ssl)
        cdef int error
        if result == 1:
            if self.server_name is None:
                self.server_name = _server_name_of(self)
            return DONE
        error = SSL_get_error(self.ssl, result)
        if error == SSL_ERROR_WANT_READ:
            return WANT_READ
        if error == SSL_ERROR_WANT_WRITE:
            return WANT_WRITE
        _handshake_failed(self, error, errno, _errors())
        return DONE     # not reached: the hook raises

    def recv_into(self, buffer, Py_ssize_t nbytes=0):
        """Decrypt into ``buffer`` (at most one record, no copy); 0 at EOF."""
        cdef Py_buffer view
        cdef int result, error
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if nbytes <= 0 or nbytes > view.len:
                nbytes = view.len
            # At most one record per call (SSL_read returns one record's plaintext at most).
            # With read-ahead the next records may already be in OpenSSL's buffer rather
            # than in the socket: callers read on until BlockingIOError (no edge announces
            # buffered bytes), which every reader in engine/ does.
            if nbytes > MAX_PLAINTEXT:
                nbytes = MAX_PLAINTEXT
            result = SSL_read(self.ssl, view.buf, <int> nbytes)
        finally:
            PyBuffer_Release(&view)
        if result > 0:
            self.read_wants_write = False
            return result
        error = SSL_get_error(self.ssl, result)
        self.read_wants_write = error == SSL_ERROR_WANT_WRITE
        if error == SSL_ERROR_WANT_READ or error == SSL_ERROR_WANT_WRITE:
            raise BlockingIOError
        return _read_failed(self, error, errno, _errors())

    def recv(self, Py_ssize_t n):
        cdef bytearray buf = bytearray(n if n < MAX_PLAINTEXT else MAX_PLAINTEXT)
        cdef Py_ssize_t got = self.recv_into(buf)
        del buf[got:]
        return bytes(buf)

    def send(self, data):
        """Encrypt and write ``data`` (bytes-like); returns the bytes taken, as socket.send:
        fewer than given only when the socket is full (an EPOLLOUT edge follows), raises
        BlockingIOError when it took none."""
        cdef Py_buffer view
        cdef int result = 1, error
        cdef Py_ssize_t total = 0, left, n
        cdef char *buf
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        n = view.len
        try:
            buf = <char *> view.buf
            # SSL_MODE_ENABLE_PARTIAL_WRITE: SSL_write returns after each record, so write on
            # until all is taken or the socket is full (a short count that is not "full"
            # would wait for an edge that never comes). What is not taken is passed again
            # (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), as OpenSSL asks.
            while total < n:
                left = n - total
                result = SSL_write(self.ssl, buf + total,
                                   <int> (left if left < 0x40000000 else 0x40000000))
                if result <= 0:
                    break
                total += result
        finally:
            PyBuffer_Release(&view)
        if total == n:
            return total
        error = SSL_get_error(self.ssl, result)
        if error == SSL_ERROR_WANT_WRITE or error == SSL_ERROR_WANT_READ:
            if total:
                return total
            raise BlockingIOError
        _write_failed(self, error, errno, _errors())
        return 0        # not reached: the hook raises

    def session_reused(self):
        """Whether the handshake resumed a session."""
        return bool(SSL_session_reused(self.ssl))

    def close(self):
        # Go's tls.Conn.Close sends close_notify; best effort, never blocking: whatever
        # SSL_shutdown says, the socket closes, and OpenSSL's error queue is left empty.
        if SSL_shutdown(self.ssl) < 0:
            ERR_clear_error()
        self.sock.close()


# ---- the ClientHello peek ----------------------------------------------------------------

cdef Py_ssize_t MAX_HELLO_RECORD = 5 + (1 << 14)   # header + at most 2^14 bytes (RFC 8446 §5.1)


def parse_client_hello(data, Py_ssize_t n=-1):
    """Read the SNI from the first TLS record of a connection (``data[:n]``, all of it when
    ``n`` is -1): see pyroute.tls.parse_client_hello, which this is."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t need
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if n < 0 or n > view.len:
            n = view.len
        p = <const unsigned char *> view.buf
        if n < 5:
            return False, 5
        if p[0] != 0x16:
            return True, None
        need = 5 + ((p[3] << 8) | p[4])
        if need > MAX_HELLO_RECORD:
            return True, None
        if n < need:
            return False, need
        return True, _sni_from_handshake(p + 5, need - 5)
    finally:
        PyBuffer_Release(&view)


cdef object _sni_from_handshake(const unsigned char *msg, Py_ssize_t size):
    # RFC 8446 §4.1.2 ClientHello; RFC 6066 §3 server_name. No server_name extension -> "",
    # any inconsistency -> None (a hello this parser cannot read).
    cdef Py_ssize_t end, p, ext_end, elen, q, stop, nlen
    cdef int etype
    if size < 4 or msg[0] != 1:
        return None
    end = 4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3])
    if end > size:
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
        if etype == 0:                              # server_name
            q = p + 2                               # skip server_name_list length
            stop = p + elen
            while q + 3 <= stop:
                nlen = (msg[q + 1] << 8) | msg[q + 2]
                if q + 3 + nlen > stop:
                    return None
                if msg[q] == 0:                     # host_name
                    try:
                        # Traefik's types.CanonicalDomain: trimmed and lower-cased
                        return (<bytes> msg[q + 3:q + 3 + nlen]).decode("ascii").strip().lower()
                    except UnicodeDecodeError:
                        return None
                q += 3 + nlen
            return None
        p += elen
    return "" if p == ext_end else None
