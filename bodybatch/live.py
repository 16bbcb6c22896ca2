"""Writing person tracks while a video is captured: :class:`VideoWriter`.

``VideoWriter.append(**frame)`` takes what ``bodycompress.BodyCompressor.append``
takes for one frame; a background thread splits the detections into person tracks
(:mod:`bodybatch.splitting`, as the batch job does: the job *is* a loop over a
prediction file feeding a VideoWriter) and writes each track through a
:class:`~bodybatch.TrackWriter`. Live files are recoverable after a crash
(``bodybatch recover``, :mod:`bodybatch.formats._journal`).
"""

import queue
import threading
from pathlib import Path

import numpy as np

from bodybatch._rows import DETECTION_FIELDS
from bodybatch.errors import OutputError, TrackError, WriterError
from bodybatch.formats._journal import PARTIAL_SUFFIX

__all__ = ["VideoWriter", "TrackRouter", "TRACK_NAME"]

#: File name of track ``key`` inside the output folder.
TRACK_NAME = "track_{:04d}.xz"
_DONE = object()


class TrackRouter:
    """Route each frame's detections to per-track writers (shared by the batch job's
    :func:`bodybatch.job.split_tracks` and :class:`VideoWriter`).

    Parameters
    ----------
    splitter : from :func:`bodybatch.splitting.make_splitter`
    open_writer : callable
        ``open_writer(key)`` -> object with ``append(row, frame_index=t)``, ``len``,
        ``close()`` (result kept in :attr:`done`) and ``abort()``.
    min_length : int
        Tracks with fewer rows are aborted and their lengths listed in :attr:`dropped`.
    isolate : bool
        Catch the errors of one track's writer: abort that track only, record a
        :class:`~bodybatch.errors.WriterError` in :attr:`errors` and go on. Otherwise
        the error propagates.
    """

    def __init__(self, splitter, open_writer, min_length, isolate=False):
        self.splitter, self.open_writer, self.min_length, self.isolate = splitter, open_writer, min_length, isolate
        self.writers, self.done, self.dropped, self.failed, self.errors = {}, {}, [], set(), []

    def frame(self, t, frame):
        """Route the detections of video frame ``t`` (a frame dict, see :class:`VideoWriter`)."""
        update = self.splitter.update(t, frame)
        camera = frame.get("camera")
        for key, j in update.assignments:
            if key in self.failed:
                continue
            row = {k: frame[k][j] for k in DETECTION_FIELDS if k in frame}
            if camera is not None:
                row["camera"] = camera
            self._guard(key, t, self._append, key, row, t)
        for key in update.ended:
            self._guard(key, t, self._close, key)

    def _append(self, key, row, t):
        writer = self.writers.get(key)
        if writer is None:
            writer = self.writers[key] = self.open_writer(key)
        writer.append(row, frame_index=t)

    def _close(self, key):
        writer = self.writers.pop(key, None)
        if writer is None:
            return
        if len(writer) >= self.min_length:
            self.done[key] = writer.close()
        else:
            writer.abort()
            self.dropped.append(len(writer))

    def _guard(self, key, t, fn, *args):
        if not self.isolate:
            return fn(*args)
        try:
            fn(*args)
        except Exception as exc:  # one track fails, the others go on
            writer = self.writers.pop(key, None)
            if writer is not None:
                writer.abort()
            self.failed.add(key)
            self.errors.append(WriterError(f"track {key}, frame {t}: {exc}", track=key, frame=t))

    def finish(self, t=None):
        """End the video: close the tracks still open."""
        for key in self.splitter.finish():
            self._guard(key, t, self._close, key)

    def abort(self):
        """Discard every open track."""
        for writer in self.writers.values():
            writer.abort()
        self.writers.clear()


class VideoWriter:
    """Write one video's detections as person track files, frame by frame, off the
    caller's thread (a drop-in for ``bodycompress.BodyCompressor``).

    Parameters
    ----------
    output_dir : path-like
        Folder of the tracks (created): ``track_NNNN.xz`` per kept track. While
        recording, a track is ``track_NNNN.xz.partial`` plus its journal.
    metadata : dict, optional
        The video's metadata; each track file's metadata is ``{"video": video,
        "track": key, "source": metadata}``.
    tracks : dict, optional
        Splitting options as in the config's ``tracks:`` section: ``mode``
        (``"associate"``, default, ``"ids"`` or ``"order"``), ``min_length`` (rows,
        default 10), ``max_gap`` (frames), ``gate_mm`` (mm), ``id_key``.
    manifest : path-like, optional
        A manifest (``manifest.jsonl``): :meth:`close` appends one row per track to a
        journal beside it (``bodybatch manifest compact`` merges it).
    video : str, optional
        The video's name in the track metadata and manifest rows (default: the name of
        ``output_dir``).
    max_queue : int
        Frames waiting for the background worker, at most (memory bound: about
        ``max_queue x people x V x 16`` bytes).
    on_full : {"block", "drop"}
        A full queue makes :meth:`append` wait, or drop the frame (it returns False).
    recoverable : bool
        Write crash-recoverable partial files (``bodybatch recover``); False writes
        to hidden temporary files (what the batch job does inside its staging folder).
    background : bool
        Encode in a worker thread (default); False encodes inside :meth:`append`.
    codec : str, dict or codec object
        As for :class:`~bodybatch.TrackWriter` (``"bodybatch"`` is needed for
        ``recoverable``).
    **codec_options
        e.g. ``quantization_mm=0.5`` (mm), ``chunk_size=64`` (rows).

    Attributes
    ----------
    frames : int
        Frames appended so far (each call takes the next video frame index, also
        when the frame is dropped or rejected).
    frames_dropped : int
    tracks : dict
        After :meth:`close`: track key -> :class:`~bodybatch.TrackInfo`.
    errors : list of WriterError
        Every error of the worker so far. ``frame`` is where it surfaced: for a bad
        value found when its chunk is encoded, the last frame of that chunk.

    Raises
    ------
    OutputError
        ``output_dir`` holds partial files of an earlier crash (recover them first:
        a new writer would overwrite them).
    """

    def __init__(self, output_dir, metadata=None, *, tracks=None, manifest=None, video=None, max_queue=32,
                 on_full="block", recoverable=True, background=True, codec="bodybatch", **codec_options):  # fmt: skip
        from bodybatch.codec import Codec, get_codec
        from bodybatch.splitting import make_splitter

        if on_full not in ("block", "drop"):
            raise TrackError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        if not (isinstance(max_queue, int) and max_queue >= 1):
            raise TrackError(f"max_queue must be an int >= 1, got {max_queue!r}")
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.codec = codec if isinstance(codec, Codec) and not codec_options else get_codec(codec, **codec_options)
        if recoverable and self.codec.file_format != "bodybatch":
            raise TrackError(f"recoverable live files need the bodybatch codec, not {self.codec.file_format} "
                             "(or pass recoverable=False)")  # fmt: skip
        stale = sorted(self.output_dir.glob("*" + PARTIAL_SUFFIX))
        if stale:
            raise OutputError(f"{self.output_dir}: {len(stale)} unrecovered partial track file(s) of an earlier "
                              f"crash (e.g. {stale[0].name}); run 'bodybatch recover {self.output_dir}' first")  # fmt: skip
        self.metadata, self.manifest = metadata, manifest
        self.video = video if video is not None else self.output_dir.name
        options = {"mode": "associate", "min_length": 10, **(tracks or {})}
        self.tracking_options = dict(options)
        self.mode, min_length = options.pop("mode"), options.pop("min_length")
        splitter = make_splitter(self.mode, min_length=min_length, **options)
        self._router = TrackRouter(splitter, self._open_writer, min_length, isolate=True)
        self._recoverable, self._structures = recoverable, {}
        self.frames = self.frames_dropped = 0
        self.tracks, self._reported, self._shapes = None, 0, {}
        self._closed, self._aborted, self._on_full = False, False, on_full
        self._thread = None
        if background:
            self._queue = queue.Queue(max_queue)
            self._thread = threading.Thread(target=self._work, name=f"bodybatch-{self.video}", daemon=True)
            self._thread.start()

    @property
    def errors(self):
        return list(self._router.errors)

    def _open_writer(self, key):
        from bodybatch.track_writer import TrackWriter

        meta = {"video": self.video, "track": int(key), "source": self.metadata}
        return TrackWriter(self.output_dir / TRACK_NAME.format(key), meta, codec=self.codec,
                           structures=self._structures, recoverable=self._recoverable)  # fmt: skip

    def _work(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if not self._aborted:
                self._write(*item)

    def _write(self, t, frame):
        try:
            self._router.frame(t, frame)
        except Exception as exc:  # the splitter refused the frame: the frame is lost, tracks go on
            self._router.errors.append(WriterError(f"{self.video}: frame {t}: {exc}", frame=t))

    def append(self, **frame):
        """Queue one frame (returns at once unless the queue is full).

        Parameters
        ----------
        **frame
            ``boxes (N, 5)`` (x, y, w, h, score; px), ``vertices (N, V, 3)`` mm,
            ``joints (N, J, 3)`` mm, ``vertex_uncertainties (N, V)`` m,
            ``joint_uncertainties (N, J)`` m, ``camera`` (dict of arrays or camera
            object, shared by the detections), extra keys (e.g. ``ids (N,)`` for
            ``mode: ids``). Arrays are copied: the caller may reuse them.

        Returns
        -------
        bool
            True when queued, False when dropped (``on_full="drop"`` and a full queue).

        Raises
        ------
        WriterError
            The frame's per-detection shapes differ from earlier frames (the frame is
            rejected, nothing else is affected); or an earlier frame failed in the
            worker (raised once, after this frame was queued), naming track and frame.
        """
        if self._closed:
            raise WriterError(f"{self.video}: VideoWriter is closed")
        t = self.frames
        self.frames += 1
        frame = self._checked(t, frame)
        if self._thread is None:
            self._write(t, frame)
            queued = True
        elif self._on_full == "drop":
            try:
                self._queue.put_nowait((t, frame))
                queued = True
            except queue.Full:
                self.frames_dropped += 1
                queued = False
        else:
            self._queue.put((t, frame))
            queued = True
        self._raise_new()
        return queued

    def _checked(self, t, frame):
        """Frame ``t`` with copied arrays; WriterError when its shapes changed."""
        out, n = {}, None
        for k, v in frame.items():
            if v is None:
                continue
            if k == "camera":
                out[k] = {c: np.array(a) for c, a in v.items()} if isinstance(v, dict) else v
                continue
            if k in DETECTION_FIELDS:
                shape = tuple(v.shape) if hasattr(v, "shape") else np.shape(v)
                if not shape or (n is not None and shape[0] != n):
                    raise WriterError(f"{self.video}: frame {t}: {k} has shape {shape}; expected ({n}, ...)", frame=t)
                n = shape[0]
                known = self._shapes.setdefault(k, shape[1:])
                if shape[1:] != known:
                    raise WriterError(f"{self.video}: frame {t}: {k} has per-detection shape {shape[1:]}, earlier "
                                      f"frames {known} (frame rejected)", frame=t)  # fmt: skip
                out[k] = v if hasattr(v, "factor") else np.array(v)  # GridValues are the reader's own
            else:
                out[k] = np.array(v) if isinstance(v, np.ndarray) else v
        return out

    def _raise_new(self):
        errors = self._router.errors
        if self._reported < len(errors):
            self._reported += 1
            raise errors[self._reported - 1]

    def _stop(self):
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def close(self):
        """Encode the queued frames, finish every track; returns ``{key: TrackInfo}``
        of the kept tracks (also :attr:`tracks`).

        Raises
        ------
        WriterError
            The first error of the worker not raised yet; the other tracks are
            published all the same (see :attr:`tracks` and :attr:`errors`).
        """
        if self._closed:
            return self.tracks
        self._closed = True
        self._stop()
        self._router.finish(self.frames - 1)
        self.tracks = dict(sorted(self._router.done.items()))
        if self.manifest is not None:
            self._append_manifest()
        while self._reported < len(self._router.errors):
            self._raise_new()
        return self.tracks

    @property
    def dropped_short(self):
        """Rows of each track dropped for being shorter than ``min_length``."""
        return list(self._router.dropped)

    def _append_manifest(self):
        import os

        from bodybatch.manifest import Journal, ManifestRow

        root = Path(self.manifest).parent.resolve()
        tracking = {"mode": self.mode, "kept": len(self.tracks), "dropped_short": len(self._router.dropped)}
        settings = {"codec": self.codec.get_config(), "tracks": self.tracking_options}
        rows = []
        for key, info in self.tracks.items():
            path = Path(info.path).resolve()
            rel = path.relative_to(root).as_posix() if root in path.parents else str(path)
            rows.append(ManifestRow.live(self.video, key, rel, info, settings, self.metadata, tracking))
        with Journal(self.manifest, writer=f"live-{os.getpid()}") as journal:
            journal.append(self.video, rows)

    def abort(self):
        """Stop and discard every track not finished yet (idempotent)."""
        self._aborted = True
        if not self._closed:
            self._closed = True
            self._stop()
            self._router.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
