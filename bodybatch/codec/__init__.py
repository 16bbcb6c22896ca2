"""Track codecs: pure transformations between track arrays and bytes (no file I/O).

- ``bodybatch`` (:class:`~bodybatch.codec.bodybatch_codec.BodybatchCodec`): the
  default, space-time predictive codec.
- ``bodycompress`` (:class:`~bodybatch.codec.bodycompress_codec.BodycompressCodec`):
  compatibility mode, rows as ``bodycompress`` 0.3.0 stores them.

Every codec derives from :class:`Codec` and is registered by id; the run
configuration derives its ``codec.*`` keys from the registry.
"""

from bodybatch.codec._base import Codec, CodecOption, codec_class, codec_ids, get_codec, register_codec
from bodybatch.codec import bodybatch_codec as _bodybatch_codec  # noqa: F401  (registers)
from bodybatch.codec import bodycompress_codec as _bodycompress_codec  # noqa: F401  (registers)

__all__ = ["Codec", "CodecOption", "get_codec", "register_codec", "codec_class", "codec_ids"]
