"""Reader of per-video prediction files written by ``bodycompress`` 0.2.x and 0.3.x
(header: :mod:`._header`; frames: :mod:`._frames`; streams: :mod:`._streams`).

Frames come back exactly as ``bodycompress`` decodes them:
``vertices (N, V, 3)`` and ``joints (N, J, 3)`` in mm, ``vertex_uncertainties (N, V)``
and ``joint_uncertainties (N, J)`` in m (float32; float64 beyond 2**24 quantization
steps), other keys (``boxes``, ``camera`` ...) as stored. Decoded coordinates are fresh
writable arrays; other arrays are read-only views over their stored bytes. Nothing is
unpickled unless asked for and every allocation is bounded (see :mod:`bodybatch._msgpack`).
"""

import os
import weakref
from pathlib import Path

from bodybatch._files import human_bytes
from bodybatch.errors import BodybatchError, FormatError
from bodybatch.formats.bodycompress import _contents
from bodybatch.formats.bodycompress._frames import decode_frame
from bodybatch.formats.bodycompress._header import read_start
from bodybatch.formats.bodycompress._streams import StreamError, iter_raw_frames

__all__ = ["read_predictions", "PredictionReader"]

_MISSING = object()


def _to_camera(camera):
    from bodybatch.cameras import dict_to_camera

    if not isinstance(camera, dict):
        raise FormatError(f"camera is a {type(camera).__name__}, not a map")
    try:
        return dict_to_camera(camera)
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"invalid camera dict ({exc!r:.200})") from None


class PredictionReader:
    """Streaming reader of one bodycompress prediction file.

    The header and metadata are read and validated on construction; the file is
    opened again for each iteration, which decodes from the first frame (re-iterable)
    holding about one frame plus a few MiB of buffers.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by bodycompress 0.2.x or 0.3.x (xz or zstd inside).
    decode_camera : bool
        Turn each frame's ``camera`` dict into a ``deltacamera.Camera``; raises
        :class:`~bodybatch.errors.BodybatchError` now if deltacamera is not installed.
    allow_pickle : bool
        Unpickle object arrays stored in the file. That runs code from the file: only
        for trusted files. Otherwise such arrays raise FormatError.
    keep_grid : iterable of str
        Quantized fields (``vertices``, ``joints``, ``vertex_uncertainties``,
        ``joint_uncertainties``) to return as :class:`bodybatch._grid.GridValues`
        (the stored integers and their factor) instead of float arrays, for consumers
        that quantize again; ``np.asarray`` of one gives the same floats.

    Attributes
    ----------
    path : pathlib.Path
    header : PredictionHeader
    metadata : dict or None
        The writer's metadata (e.g. ``video_path``, ``fps``, ``n_frames``).

    Raises
    ------
    FormatError
        Message starts with the path. On construction: empty, unknown, incomplete,
        truncated or corrupt file, invalid header or metadata. During iteration: corrupt
        or truncated data, invalid frames, fewer or more frames than ``len(reader)``.
        FileNotFoundError and other OSErrors propagate unchanged.
    """

    def __init__(self, path, *, decode_camera=False, allow_pickle=False, keep_grid=()):
        self.path = Path(path)
        self._keep_grid = frozenset(keep_grid)
        self._decode_camera, self._allow_pickle = bool(decode_camera), bool(allow_pickle)
        self._closed, self._live = False, weakref.WeakSet()
        self._kind = None
        if self._decode_camera:
            try:
                import deltacamera  # noqa: F401
            except ImportError:
                raise BodybatchError(
                    "decode_camera=True needs deltacamera: pip install 'bodybatch[camera]'"
                ) from None
        with open(self.path, "rb") as f:
            self._size = os.fstat(f.fileno()).st_size
            try:
                self.header, self._inverse_order, self.metadata = read_start(f, self._size, self._allow_pickle)
            except FormatError as exc:
                raise FormatError(f"{self.path}: {exc}") from None

    def __len__(self):
        """Number of frames recorded in the header."""
        return self.header.length

    def __iter__(self):
        if self._closed:
            raise ValueError(f"{self.path}: reader is closed")
        frames = self._iter_frames()
        self._live.add(frames)
        return frames

    def _iter_frames(self, camera_objects=True):
        path, length = self.path, self.header.length
        n_frames = 0
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != self._size:
                raise FormatError(f"{path}: file size changed since it was opened")
            f.seek(self.header.data_start)
            raw_frames = iter_raw_frames(f, self.header.compression, self._allow_pickle)
            while True:
                try:
                    frame = next(raw_frames, _MISSING)
                except StreamError as exc:
                    raise FormatError(f"{path}: {exc} after frame {n_frames} of {length}") from None
                except FormatError as exc:
                    raise FormatError(f"{path}: frame {n_frames}: {exc}") from None
                except (ValueError, TypeError) as exc:  # msgpack's errors
                    message = f"frame {n_frames}: invalid msgpack data ({exc})"
                    raise FormatError(f"{path}: {message}") from None
                if frame is _MISSING:
                    break
                if n_frames == length:
                    raise FormatError(f"{path}: data stream holds more than {length} frames")
                yield self._decode_frame(frame, n_frames, camera_objects)
                n_frames += 1
        if n_frames < length:
            raise FormatError(f"{path}: data stream ends after frame {n_frames} of {length}")

    def _decode_frame(self, frame, index, camera_objects=True):
        try:
            frame = decode_frame(frame, self._inverse_order, self._keep_grid)
            if self._decode_camera and camera_objects and "camera" in frame:
                frame["camera"] = _to_camera(frame["camera"])
        except FormatError as exc:
            raise FormatError(f"{self.path}: frame {index}: {exc}") from None
        return frame

    @property
    def kind(self):
        """``"predictions"`` (frames of all detections, as pipelines write) or ``"track"``
        (one person's rows: a track file of ``codec="bodycompress"``): ``"track"`` when
        the metadata holds a ``bodybatch`` entry (bodybatch wrote it), else decided by
        the first frame (``vertices (N, V, 3)`` vs ``(V, 3)``, see
        :func:`~bodybatch.formats.bodycompress._contents.frame_kind`)."""
        if self._kind is None:
            if isinstance(self.metadata, dict) and "bodybatch" in self.metadata:
                self._kind = "track"
            else:
                frames = self._iter_frames(camera_objects=False)
                try:
                    first = next(frames, None)
                finally:
                    frames.close()
                self._kind = "predictions" if first is None else _contents.frame_kind(first)
        return self._kind

    def summary(self):
        """JSON-ready description of the file (decodes every frame once).

        Returns
        -------
        dict
            ``file``, ``kind`` (``"predictions"``), ``format`` (``"bodycompress"``),
            ``version`` (e.g. ``"0.3.0"``), ``compression``, ``vertex_order`` (None,
            ``"auto"``, ``"smpl"``, ``"smplx"`` or ``"custom"``), ``bytes`` (file size),
            and what :func:`~bodybatch.formats.bodycompress._contents.summarize` gives:
            ``frames``, ``detections``, ``people_per_frame`` (min, median, max),
            ``fields`` (per-detection shape and dtype), ``camera``, ``per_frame``
            (if any).
        """
        h = self.header
        out = {
            "file": str(self.path),
            "kind": "predictions",
            "format": "bodycompress",
            "version": ".".join(map(str, h.version)),
            "compression": h.compression,
            "vertex_order": _contents.vertex_order_name(h),
            "bytes": self._size,
            "size": human_bytes(self._size),
        }
        out.update(self._scan(_contents.summarize))
        return out

    def to_arrays(self):
        """All frames as arrays, read in one pass (camera as dicts of arrays).

        Returns
        -------
        dict
            Each per-detection field concatenated over frames along its first axis
            (``vertices (D, V, 3)`` mm, ``joints (D, J, 3)`` mm, ``vertex_uncertainties
            (D, V)`` m, ``joint_uncertainties (D, J)`` m, ``boxes (D, 5)`` px, with D
            the detections of all frames; other keys with N rows in every frame,
            e.g. ``ids (D,)``, too); ``counts (T,)`` int64 detections per frame, so
            ``np.split(a, np.cumsum(counts)[:-1])`` gives the T frames back;
            ``camera``: dict of per-frame ``(T, ...)`` arrays; ``frame``: dict of the
            other per-frame keys, ``(T, ...)`` arrays or ``(T,)`` JSON strings (see
            :func:`~bodybatch.formats.bodycompress._contents.collect_arrays`).
            Memory: about the arrays plus one frame.

        Raises
        ------
        FormatError
            Naming the path: a field missing from some frames or changing shape.
        """
        return self._scan(_contents.collect_arrays)

    def _scan(self, consume):
        """``consume(frames)`` over one pass of the frames (camera as dicts); its
        FormatErrors name the path."""
        if self._closed:
            raise ValueError(f"{self.path}: reader is closed")
        frames = self._iter_frames(camera_objects=False)
        self._live.add(frames)
        try:
            return consume(frames)
        except FormatError as exc:
            message = str(exc)
            prefix = f"{self.path}: "
            raise FormatError(message if message.startswith(prefix) else prefix + message) from None
        finally:
            frames.close()

    def export_arrays(self):
        """:meth:`to_arrays` flattened for ``numpy.savez`` (see
        :func:`bodybatch._rows.flat_arrays`): ``camera_<key>`` and
        ``frame_<key>`` per-frame arrays, ``metadata`` a JSON string (0-d array)."""
        from bodybatch._rows import flat_arrays

        return flat_arrays(self.to_arrays(), self.metadata, self.path)

    def close(self):
        """Stop running iterations (closing their files); iterating again raises ValueError."""
        self._closed = True
        for frames in list(self._live):
            frames.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        h = self.header
        return (f"PredictionReader({str(self.path)!r}, version={h.version}, "
                f"compression={h.compression!r}, frames={h.length})")  # fmt: skip


def read_predictions(path, *, decode_camera=False, allow_pickle=False, keep_grid=()):
    """Open a bodycompress prediction file: a :class:`PredictionReader` (see there).

    ``len(reader)`` is the frame count; iterating yields one dict per frame. The header
    and metadata are read and checked now (FormatError naming the path), frames lazily.
    """
    return PredictionReader(path, decode_camera=decode_camera, allow_pickle=allow_pickle, keep_grid=keep_grid)
