"""The shape of the maps a track file's codec sections unpack to (docs/format.md,
"Header" and "Chunk"), declared once and checked before anything is decoded.

A file's sections are CRC-checked, so a wrong shape means a writer bug or a crafted
file: it gets a :class:`~bodybatch.errors.FormatError` naming the entry, while an
error raised later, inside the decoders, is a bodybatch bug and is not disguised as
a corrupt file.
"""

from bodybatch.errors import FormatError

__all__ = ["check", "optional", "list_of", "map_of", "CHUNK", "ARRAY", "GROUP_ENTRY", "LAYOUT_GROUP"]


class _Optional:
    def __init__(self, spec):
        self.spec = spec


class _ListOf:
    def __init__(self, spec):
        self.spec = spec


class _MapOf:
    def __init__(self, spec):
        self.spec = spec


def optional(spec):
    """A map entry that may be absent."""
    return _Optional(spec)


def list_of(spec):
    """A list (msgpack array) whose items all match ``spec``."""
    return _ListOf(spec)


def map_of(spec):
    """A map from string keys to values that all match ``spec``."""
    return _MapOf(spec)


def _kind(value):
    return {bytes: "bytes", str: "a string", int: "an integer", dict: "a map", list: "a list"}.get(
        type(value), type(value).__name__
    )


def check(value, spec, where, path=""):
    """Raise FormatError (``where`` + the entry's path) unless ``value`` matches ``spec``:
    a type, a dict of key -> spec (other keys allowed), :func:`list_of`, :func:`map_of`
    or :func:`optional` entries. Integers exclude bools. Returns ``value``."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            _fail(where, path, f"is {_kind(value)}, expected a map")
        for key, sub in spec.items():
            if isinstance(sub, _Optional):
                if key not in value:
                    continue
                sub = sub.spec
            elif key not in value:
                _fail(where, path, f"has no {key!r} entry")
            check(value[key], sub, where, f"{path}.{key}" if path else key)
    elif isinstance(spec, _ListOf):
        if not isinstance(value, (list, tuple)):
            _fail(where, path, f"is {_kind(value)}, expected a list")
        for i, item in enumerate(value):
            check(item, spec.spec, where, f"{path}[{i}]")
    elif isinstance(spec, _MapOf):
        if not isinstance(value, dict):
            _fail(where, path, f"is {_kind(value)}, expected a map")
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(where, path, f"has a key of type {type(key).__name__}")
            check(item, spec.spec, where, f"{path}.{key}" if path else key)
    elif not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
        _fail(where, path, f"is {_kind(value)}, expected {_kind(spec())}")
    return value


def _fail(where, path, what):
    raise FormatError(f"{where}malformed {path or 'entry'}: {what}")


#: A lossless array (boxes, a camera parameter): ``(T, *shape)`` values of ``dtype``.
ARRAY = {"dtype": str, "shape": list_of(int), "data": bytes}

#: A point group's chunk entry, every format; format 2.0 adds ``s_abs`` and
#: ``weights``, format 3.x ``weights`` (:data:`GROUP_ENTRY`).
_GROUP = {"max_abs": int, "classes": bytes, "dtype": str, "streams": list_of(bytes)}

#: The point group entry per format major version.
GROUP_ENTRY = {
    1: _GROUP,
    2: {**_GROUP, "s_abs": int, "weights": bytes},
    3: {**_GROUP, "weights": bytes},
}

#: A chunk's map (its point groups are checked against the file's layout).
CHUNK = {"points": map_of(dict), "arrays": optional(map_of(ARRAY)), "camera": optional(map_of(ARRAY))}

#: A point group of the header's layout, per format major version: ``curve`` and
#: ``steps`` (format 3.x: one stream per parent column) unless a bundled
#: ``structure`` is named (format 3.1).
_LAYOUT = {"n_points": int, "n_dims": int, "n_parents": int, "structure": optional(str), "curve": optional(bytes)}
LAYOUT_GROUP = {
    1: {**_LAYOUT, "steps": optional(bytes)},
    2: {**_LAYOUT, "steps": optional(bytes)},
    3: {**_LAYOUT, "steps": optional(list_of(bytes))},
}
