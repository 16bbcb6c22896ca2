"""Track codecs: small objects with ``codec_id`` and JSON-safe ``get_config()``.

- ``bodybatch`` (:class:`BodybatchCodec`): the default, space-time predictive codec.
- ``bodycompress`` (:class:`BodycompressCodec`): writes files that
  ``bodycompress.BodyDecompressor`` 0.3.0 reads (compatibility mode).
"""

from bodybatch.errors import TrackError

__all__ = ["get_codec", "CODEC_IDS"]

CODEC_IDS = ("bodybatch", "bodycompress")


def get_codec(codec="bodybatch", **options):
    """Build a codec from its id (or a config dict with ``id``) and options.

    Parameters
    ----------
    codec : str or dict or codec object
        One of ``CODEC_IDS``, a ``get_config()`` dict, or an existing codec.
    **options
        Codec options, e.g. ``quantization_mm=1.0``.
    """
    if hasattr(codec, "get_config"):
        if options:
            codec = dict(codec.get_config(), **options)
        else:
            return codec
    if isinstance(codec, dict):
        config = dict(codec, **options)
        name = config.pop("id", None)
        options = config
    else:
        name = codec
    if name == "bodybatch":
        from bodybatch.codec.bodybatch_codec import BodybatchCodec

        cls = BodybatchCodec
    elif name == "bodycompress":
        from bodybatch.codec.bodycompress_codec import BodycompressCodec

        cls = BodycompressCodec
    else:
        raise TrackError(f"unknown codec {name!r}; allowed: {', '.join(CODEC_IDS)}")
    return _construct(cls, options)


def _construct(cls, options):
    try:
        return cls(**options)
    except TypeError as exc:
        raise TrackError(f"bad options for codec {cls.codec_id!r}: {exc}") from None


def _codec_from_config(cls, config):
    """``cls.from_config``: a codec of class ``cls`` from its ``get_config()`` dict
    (``format_version``, which files record beside the options, is ignored)."""
    config = dict(config)
    if config.pop("id", cls.codec_id) != cls.codec_id:
        raise TrackError(f"config is not for codec {cls.codec_id!r}")
    config.pop("format_version", None)
    return _construct(cls, config)
