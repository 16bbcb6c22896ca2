"""Read a converted dataset back: :class:`Dataset`, a map-style dataset over the
``ok`` tracks of a manifest (whole tracks, or windows of consecutive rows).

The index is built from the manifest alone (:func:`bodybatch.manifest.iter_manifest`,
journals included); track files are opened lazily, at most ``cache_size`` at a time
per process, and never shared across a fork, so a :class:`Dataset` works unchanged
in a ``torch.utils.data.DataLoader`` with ``num_workers > 0`` or in a
``multiprocessing`` pool (it pickles without its open files and imports no torch).
"""

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bodybatch.errors import DatasetError, FormatError
from bodybatch._rows import check_fields

__all__ = ["Dataset", "resolve_manifest"]

GAPS = ("flag", "exclude")


def resolve_manifest(root_or_manifest, root=None):
    """``(manifest, root)`` paths from an output root (its ``manifest.jsonl``) or a
    manifest file (root: its folder unless ``root`` is given).

    Raises
    ------
    DatasetError
        Neither a folder holding ``manifest.jsonl`` nor a file.
    """
    path = Path(root_or_manifest)
    manifest = path / "manifest.jsonl" if path.is_dir() else path
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: no such manifest (give an output root or its manifest.jsonl)")
    return manifest, Path(root) if root is not None else manifest.parent


class Dataset:
    """The ``ok`` tracks of a converted dataset as a sequence of samples.

    Parameters
    ----------
    root_or_manifest : path-like
        Output root of a run (holding ``manifest.jsonl``) or the manifest itself.
    fields : str or collection of str, optional
        Fields to decode (``vertices``, ``joints``, ``vertex_uncertainties``,
        ``joint_uncertainties``, ``boxes``, ``camera``); None: all. With the bodybatch
        codec, ``fields="joints"`` never decodes the vertex streams.
    window : int, optional
        Rows per sample; None: one sample per whole track.
    stride : int, optional
        Rows between the starts of consecutive windows of a track (default: ``window``,
        non-overlapping). A track of n rows gives ``(n - window) // stride + 1`` windows
        (none when ``n < window``).
    min_frames : int, optional
        Leave out tracks of fewer rows.
    gaps : {"flag", "exclude"}
        Windows are consecutive *rows*; a track may skip video frames (a missed
        detection). ``"flag"`` (default) keeps every window and sets the sample's
        ``contiguous`` to False when its ``frame_index`` skips a frame; ``"exclude"``
        drops those windows: it reads at construction the frame index of the tracks
        whose manifest row shows a gap (``n_frames < last_frame - first_frame + 1``;
        the other tracks are not opened).
    verify : bool or "sha256"
        Check up front that every file exists with its manifest size (``"sha256"``:
        and its checksum); DatasetError naming the first bad files.
    root : path-like, optional
        Folder the manifest's paths are relative to (default: the manifest's folder).
    cache_size : int
        Open track readers kept per process.

    Notes
    -----
    ``ds[i]`` is a dict: each field as an array of shape ``(window, ...)`` (whole
    tracks: ``(n_frames, ...)``; ``camera`` a dict of such arrays), ``frame_index``
    (int64 video frames), ``video`` (str, input path relative to ``input.root``),
    ``track`` (int), ``start`` (int, first row in the track) and ``contiguous`` (bool).
    Units as in :class:`bodybatch.TrackReader`: coordinates in mm, uncertainties in m,
    boxes in pixels. A missing file, or one of another size than its manifest row,
    raises :class:`~bodybatch.errors.DatasetError` naming it when accessed; a corrupt
    one :class:`~bodybatch.errors.FormatError` naming it.
    """

    def __init__(self, root_or_manifest, fields=None, window=None, stride=None, min_frames=None, gaps="flag",
                 verify=False, root=None, cache_size=4):  # fmt: skip
        from bodybatch.manifest import iter_manifest

        self.manifest, self.root = resolve_manifest(root_or_manifest, root)
        self.fields = check_fields(fields)
        if window is not None and int(window) < 1 or stride is not None and int(stride) < 1:
            raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
        if stride is not None and window is None:
            raise ValueError("stride needs a window")
        if gaps not in GAPS:
            raise ValueError(f"gaps must be one of {GAPS}, got {gaps!r}")
        self.window = None if window is None else int(window)
        self.stride = None if window is None else int(stride or window)
        self.gaps, self.cache_size = gaps, int(cache_size)
        #: one dict per track: path, video, track, n_frames, first_frame, last_frame, bytes, sha256
        self.tracks = []
        for row in iter_manifest(self.manifest):
            if row.status != "ok" or (min_frames is not None and (row.n_frames or 0) < min_frames):
                continue
            keys = ("path", "video", "track", "n_frames", "first_frame", "last_frame", "bytes", "sha256")
            self.tracks.append({k: row.get(k) for k in keys})
        self._readers, self._pid = OrderedDict(), os.getpid()
        if verify:
            self.verify(sha256=verify == "sha256")
        self._index()

    def _index(self):
        """Sample table: track number and first row of every sample."""
        if self.window is None:
            self._track = np.arange(len(self.tracks), dtype=np.int64)
            self._start = np.zeros(len(self.tracks), np.int64)
            return
        tracks, starts = [], []
        for t, info in enumerate(self.tracks):
            n = int(info["n_frames"] or 0)
            if n < self.window:
                continue
            s = np.arange(0, n - self.window + 1, self.stride, dtype=np.int64)
            if self.gaps == "exclude" and n < info["last_frame"] - info["first_frame"] + 1:
                fi = self.reader(t).frame_index
                s = s[fi[s + self.window - 1] - fi[s] == self.window - 1]
            tracks.append(np.full(len(s), t, np.int64))
            starts.append(s)
        self._track = np.concatenate(tracks) if tracks else np.zeros(0, np.int64)
        self._start = np.concatenate(starts) if starts else np.zeros(0, np.int64)

    def path(self, t):
        """Absolute path of track ``t`` (an index into :attr:`tracks`)."""
        return self.root / self.tracks[t]["path"]

    def verify(self, sha256=False):
        """Check every track file's existence and size (and sha256) against the manifest.

        Raises
        ------
        DatasetError
            Naming the number of bad files and the first five with their problem.
        """
        from bodybatch._files import file_sha256

        bad = []
        for t, info in enumerate(self.tracks):
            path = self.path(t)
            try:
                size = path.stat().st_size
            except OSError as exc:
                bad.append(f"{path}: {exc.strerror or 'cannot stat'}")
                continue
            if info["bytes"] is not None and size != info["bytes"]:
                bad.append(f"{path}: {size} bytes, manifest says {info['bytes']}")
            elif sha256 and info["sha256"] and file_sha256(path) != info["sha256"]:
                bad.append(f"{path}: sha256 differs from the manifest")
        if bad:
            raise DatasetError(f"{len(bad)} bad file(s) in {self.manifest}: " + "; ".join(bad[:5]))

    def reader(self, t):
        """The open reader of track ``t`` (opened on first use in this process, kept in
        a small per-process cache)."""
        from bodybatch.formats import open_track

        if self._pid != os.getpid():  # forked: the parent's file handles are not ours
            self._readers, self._pid = OrderedDict(), os.getpid()
        reader = self._readers.get(t)
        if reader is not None:
            self._readers.move_to_end(t)
            return reader
        path, expected = self.path(t), self.tracks[t]["bytes"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DatasetError(f"{path}: track file missing (listed in {self.manifest})") from None
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read track file ({exc.strerror})") from None
        if expected is not None and size != expected:
            raise DatasetError(f"{path}: {size} bytes, manifest says {expected} (changed or truncated)")
        try:
            reader = open_track(path, fields=self.fields)
        except FormatError:
            raise
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read track file ({exc.strerror})") from None
        self._readers[t] = reader
        while len(self._readers) > self.cache_size:
            self._readers.popitem(last=False)[1].close()
        return reader

    def __len__(self):
        return len(self._track)

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset samples are indexed by int, not {type(i).__name__}")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for a dataset of {n} samples")
        t, start = int(self._track[i]), int(self._start[i])
        reader = self.reader(t)
        stop = len(reader) if self.window is None else start + self.window
        if stop > len(reader):
            raise DatasetError(f"{self.path(t)}: {len(reader)} rows, manifest says {self.tracks[t]['n_frames']}")
        sample = reader.read(slice(start, stop))
        fi = sample["frame_index"]
        info = self.tracks[t]
        sample.update(video=info["video"], track=info["track"], start=start,
                      contiguous=bool(len(fi) == 0 or fi[-1] - fi[0] == len(fi) - 1))  # fmt: skip
        return sample

    def close(self):
        """Close the open readers of this process."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_readers"] = OrderedDict()  # open files stay in their process
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __repr__(self):
        shape = "whole tracks" if self.window is None else f"window={self.window}, stride={self.stride}"
        return f"Dataset({str(self.manifest)!r}, {len(self.tracks)} tracks, {len(self)} samples, {shape})"
