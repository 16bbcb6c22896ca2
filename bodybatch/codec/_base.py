"""The codec base class and the codec registry (in the spirit of numcodecs).

A codec is a small, picklable object: a ``codec_id``, options declared once in
:attr:`Codec.options` (the run configuration derives its ``codec.*`` keys, defaults
and allowed ids from them), a JSON-safe :meth:`Codec.get_config` and
:meth:`Codec.from_config`. Codecs turn arrays into bytes and back; the file that
frames those bytes is named by :attr:`Codec.file_format` and lives in
:mod:`bodybatch.formats`.
"""

import json
import numbers
from dataclasses import dataclass

from bodybatch.errors import TrackError

__all__ = ["Codec", "CodecOption", "UNCERTAINTY_OPTION", "register_codec", "get_codec", "codec_class", "codec_ids"]


@dataclass(frozen=True)
class CodecOption:
    """One codec option.

    Attributes
    ----------
    name : str
    kind : type or tuple
        ``float``, ``int``, or a tuple of the allowed values.
    default : object
        None means "chosen by the codec" (documented in ``help``); an option whose
        default is None may also be left unset (None), and an unset option is left
        out of :meth:`Codec.get_config` (so adding one changes no existing config).
    help : str
    low, high : number, optional
        Inclusive range of a numeric option.
    """

    name: str
    kind: object
    default: object
    help: str
    low: object = None
    high: object = None

    def check(self, value):
        """The validated value (ints for int options, floats for float options; None
        stays None for an option whose default is None)."""
        if value is None and self.default is None:
            return None
        if isinstance(self.kind, tuple):
            if value not in self.kind:
                raise TrackError(f"{self.name} must be one of {', '.join(map(str, self.kind))}; got {value!r}")
            return value
        if self.kind is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not ok or not self.low <= value <= self.high:
                raise TrackError(f"{self.name} must be an integer in [{self.low}, {self.high}], got {value!r}")
            return int(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TrackError(f"{self.name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not self.low <= number <= self.high:  # NaN fails too
            raise TrackError(f"{self.name} must be within [{self.low:g}, {self.high:g}], got {value!r}")
        return number


#: The uncertainties' own grid step, shared by the codecs (unset: ``quantization_mm``).
UNCERTAINTY_OPTION = CodecOption(
    "uncertainty_quantization_mm", float, None,
    "grid step (mm) of vertex_uncertainties and joint_uncertainties; unset: quantization_mm", 1e-6, 1e3,
)  # fmt: skip


class Codec:
    """Base class of the track codecs.

    Subclasses set :attr:`codec_id`, :attr:`file_format` and :attr:`options`, store
    each option as an attribute of the same name, and are registered with
    :func:`register_codec`.
    """

    #: Registry key and the ``id`` of :meth:`get_config`.
    codec_id = None
    #: Name of the on-disk format (:mod:`bodybatch.formats`) that frames the output.
    file_format = None
    #: Declared options, in :meth:`get_config` order.
    options = ()
    #: Quantized fields the codec takes as :class:`~bodybatch._grid.GridValues` (grid
    #: integers, copied instead of divided and rounded again).
    grid_fields = ()
    #: Rows a writer gathers before handing them to the codec.
    block_rows = 64

    @property
    def uncertainty_step_mm(self):
        """Grid step of the uncertainties in mm: ``uncertainty_quantization_mm`` when
        the codec has it and it is set, else ``quantization_mm``."""
        step = getattr(self, "uncertainty_quantization_mm", None)
        return self.quantization_mm if step is None else step

    def _set_options(self, **values):
        for option in self.options:
            setattr(self, option.name, option.check(values[option.name]))

    def get_config(self):
        """JSON-safe dict: ``id`` and every option that is set (unset options, None,
        are left out: a config, a file header and a config hash stay as they were
        before the option existed)."""
        values = ((o.name, getattr(self, o.name)) for o in self.options)
        return {"id": self.codec_id, **{k: v for k, v in values if v is not None}}

    @classmethod
    def from_config(cls, config):
        """A codec from its :meth:`get_config` dict (``format_version``, which old files
        record beside the options, is ignored)."""
        config = dict(config)
        if config.pop("id", cls.codec_id) != cls.codec_id:
            raise TrackError(f"config is not for codec {cls.codec_id!r}")
        config.pop("format_version", None)
        return _construct(cls, config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(json.dumps(self.get_config(), sort_keys=True))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({args})"


_REGISTRY = {}


def register_codec(cls):
    """Register a :class:`Codec` subclass under its ``codec_id`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Codec) and cls.codec_id):
        raise TypeError("register_codec takes a Codec subclass with a codec_id")
    _REGISTRY[cls.codec_id] = cls
    return cls


def codec_ids():
    """Ids of the registered codecs, in registration order (the default first)."""
    return tuple(_REGISTRY)


def codec_class(codec_id):
    """The registered class of ``codec_id``; TrackError listing the allowed ids."""
    cls = _REGISTRY.get(codec_id)
    if cls is None:
        raise TrackError(f"unknown codec {codec_id!r}; allowed: {', '.join(_REGISTRY)}")
    return cls


def get_codec(codec="bodybatch", **options):
    """Build a codec from its id (or a config dict with ``id``) and options.

    Parameters
    ----------
    codec : str or dict or Codec
        A registered id, a :meth:`Codec.get_config` dict, or a codec (returned as is
        when no options are given).
    **options
        Codec options, e.g. ``quantization_mm=1.0``.
    """
    if isinstance(codec, Codec):
        if not options:
            return codec
        codec = codec.get_config()
    if isinstance(codec, dict):
        config = dict(codec, **options)
        return codec_class(config.get("id")).from_config(config)
    return _construct(codec_class(codec), options)


def _construct(cls, options):
    try:
        return cls(**options)
    except TypeError as exc:
        raise TrackError(f"bad options for codec {cls.codec_id!r}: {exc}") from None
