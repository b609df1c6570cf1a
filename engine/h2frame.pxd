# RFC 9113's wire vocabulary, shared by the server side (engine/h2.pyx) and the backend side
# (engine/h2up.pyx); no .pyx behind it.

# frame types (RFC 9113 §6)
cdef enum:
    T_DATA = 0
    T_HEADERS = 1
    T_PRIORITY = 2
    T_RST_STREAM = 3
    T_SETTINGS = 4
    T_PUSH_PROMISE = 5
    T_PING = 6
    T_GOAWAY = 7
    T_WINDOW_UPDATE = 8
    T_CONTINUATION = 9

# flags
cdef enum:
    F_END_STREAM = 0x1
    F_ACK = 0x1
    F_END_HEADERS = 0x4
    F_PADDED = 0x8
    F_PRIORITY = 0x20

# settings (RFC 9113 §6.5.2)
cdef enum:
    S_HEADER_TABLE_SIZE = 0x1
    S_ENABLE_PUSH = 0x2
    S_MAX_CONCURRENT_STREAMS = 0x3
    S_INITIAL_WINDOW_SIZE = 0x4
    S_MAX_FRAME_SIZE = 0x5
    S_MAX_HEADER_LIST_SIZE = 0x6
