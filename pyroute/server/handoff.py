"""How a configuration travels from the loader to the master and on to the workers: framed
pickles a worker can unpickle a slice at a time.

One pickle of a 10,000-router configuration takes ~0.3 s to load, in one C call that holds the
worker's loop for all of it (issue #11). So the big sections of the dynamic configuration (the
routers, services, middlewares… of each protocol) travel as frames of ``SLICE`` entries each,
after a head frame holding the rest of the configuration with those sections empty; loading a
frame takes ~1-2 ms, and ``loads_steps`` yields after each. The entries are the same objects
Traefik's dynamic configuration holds (plain dicts and lists), equal after the trip; only the
identity of an object shared by two entries of different frames is not kept, and nothing reads
the dynamic configuration by identity.

A payload starts with ``MAGIC``; anything else is one plain pickle (``loads`` takes both).
"""
import dataclasses
import pickle
import struct

MAGIC = b"PRC1"
SLICE = 100          # entries per frame (~1.5 ms to unpickle for IngressRoute-sized entries)
_LEN = struct.Struct("!I")


def dumps(config):
    """``config`` (a RuntimeConfig, or any picklable object) -> payload bytes."""
    frames = []
    dynamic = getattr(config, "dynamic", None)
    if isinstance(dynamic, dict) and dataclasses.is_dataclass(config):
        head = {}
        for proto, sections in dynamic.items():
            if not isinstance(sections, dict):
                head[proto] = sections
                continue
            kept = {}
            for kind, entries in sections.items():
                if isinstance(entries, dict) and len(entries) > SLICE:
                    kept[kind] = {}           # filled back, in order, from the frames
                    items = list(entries.items())
                    for i in range(0, len(items), SLICE):
                        frames.append((proto, kind, items[i:i + SLICE]))
                else:
                    kept[kind] = entries
            head[proto] = kept
        if frames:
            config = dataclasses.replace(config, dynamic=head)
    out = [MAGIC]
    for obj in [config] + frames:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        out.append(_LEN.pack(len(data)))
        out.append(data)
    return b"".join(out)


def loads_steps(payload):
    """A generator that loads ``payload`` one frame per step and returns the configuration."""
    if not payload.startswith(MAGIC):
        return pickle.loads(payload)
    view = memoryview(payload)
    pos = len(MAGIC)
    (n,) = _LEN.unpack_from(view, pos)
    config = pickle.loads(view[pos + 4:pos + 4 + n])
    pos += 4 + n
    while pos < len(view):
        yield
        (n,) = _LEN.unpack_from(view, pos)
        proto, kind, items = pickle.loads(view[pos + 4:pos + 4 + n])
        pos += 4 + n
        config.dynamic[proto][kind].update(items)
    return config


def loads(payload):
    """The configuration of ``payload``, all at once (the master's API, a new worker)."""
    steps = loads_steps(payload)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
