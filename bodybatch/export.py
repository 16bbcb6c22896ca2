"""``bodybatch export`` of a converted dataset (or of one track) into plain files.

Two layouts, under an output folder:

- ``npz``: one ``<track path>.npz`` per track (``clip_a/track_0000.npz``) holding the
  decoded fields, ``frame_index``, ``camera_<key>`` and ``metadata`` / ``manifest``
  (JSON strings: ``json.loads(str(npz["metadata"]))``), as the single-file export;
- ``frames``: ``<video>/<track>/<field>/<frame:06d>.npy``, one array per field and
  video frame, and ``<video>/<track>/track.json`` with the metadata, the frame index,
  the cameras (one dict per frame, whatever ``fields`` says) and the manifest row. ``<video>`` is the input
  path relative to ``input.root`` without its suffix, ``<track>`` ``track_NNNN``.

Each ``.npz`` is written to a temporary name and renamed; a track's ``frames`` folder
is written under a temporary name and renamed as a whole, so the output holds
complete tracks only.
"""

import fnmatch
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from bodybatch._files import write_atomically
from bodybatch._json import to_jsonable
from bodybatch.errors import OutputError
from bodybatch._rows import check_fields, flat_arrays

__all__ = ["FORMATS", "export_dataset", "export_track"]

FORMATS = ("npz", "frames")


def _track_dir_name(info):
    """``(video folder, track folder)`` of a manifest row (``street/clip_b``, ``track_0000``)."""
    video = str(Path(info["video"]).with_suffix("")) if info.get("video") else Path(info["path"]).parent.as_posix()
    track = Path(info["path"]).stem if info.get("path") else f"track_{int(info.get('track') or 0):04d}"
    return video, track


def _write_npz(reader, out, fields, info):
    arrays = reader.to_arrays(fields)
    flat = flat_arrays(arrays, reader.metadata, reader.path)
    if info is not None:
        flat["manifest"] = np.array(json.dumps(to_jsonable(dict(info)), sort_keys=True))
    write_atomically(out, lambda f: np.savez(f, **flat), what="export", make_parents=True)
    return out


def _write_frames(reader, out_dir, fields, info):
    out_dir = Path(out_dir)
    if fields is not None:  # the cameras always go to track.json
        fields = check_fields(fields) | ({"camera"} & set(reader.stored_fields))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        fi = reader.frame_index
        cameras = []
        for start in range(0, len(reader), 256):  # a bounded number of rows in memory
            block = reader.read(slice(start, start + 256), fields)
            for name, values in block.items():
                if name == "frame_index":
                    continue
                if name == "camera":
                    keys = sorted(values)
                    cameras += [{k: values[k][j] for k in keys} for j in range(len(block["frame_index"]))]
                    continue
                (tmp / name).mkdir(exist_ok=True)
                for j, frame in enumerate(block["frame_index"]):
                    np.save(tmp / name / f"{int(frame):06d}.npy", np.asarray(values[j]))
        doc = {"metadata": reader.metadata, "frame_index": fi, "camera": cameras or None,
               "manifest": dict(info) if info is not None else None}  # fmt: skip
        (tmp / "track.json").write_text(json.dumps(to_jsonable(doc), sort_keys=True))
        if out_dir.exists():  # replace a previous export of this track
            old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{out_dir}: cannot write export ({exc.strerror})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_track(reader, out, format="npz", fields=None, info=None):
    """Export one open track.

    Parameters
    ----------
    reader : TrackReader
    out : path-like
        ``npz``: the ``.npz`` file; ``frames``: the track's folder.
    format : {"npz", "frames"}
    fields : str or collection of str, optional
        Fields to decode and write (None: all).
    info : mapping, optional
        The track's manifest row, stored beside the metadata.

    Returns
    -------
    pathlib.Path
        What was written.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    write = _write_npz if format == "npz" else _write_frames
    return write(reader, Path(out), fields, info)


def export_dataset(source, out_dir, format="npz", fields=None, only=(), progress=None, root=None):
    """Export every ``ok`` track of a converted dataset.

    Parameters
    ----------
    source : path-like
        Output root of a run or its manifest.
    out_dir : path-like
        Folder receiving the exported tracks (created).
    format : {"npz", "frames"}
    fields : str or collection of str, optional
    only : sequence of str
        Globs over the videos' paths relative to ``input.root`` (as ``run --only``);
        a track is exported when one matches (none given: every track).
    progress : bool, optional
        tqdm bar; default: only when stderr is a terminal.
    root : path-like, optional
        Folder of the manifest's paths (default: the manifest's folder).

    Returns
    -------
    list of pathlib.Path
        What was written, in manifest order.
    """
    from bodybatch.dataset import Dataset

    ds = Dataset(source, fields=fields, root=root, cache_size=1)
    out_dir = Path(out_dir)
    chosen = [t for t, info in enumerate(ds.tracks)
              if not only or any(fnmatch.fnmatchcase(str(info["video"]), g) for g in only)]  # fmt: skip
    written = []
    from tqdm import tqdm

    progress = sys.stderr.isatty() if progress is None else progress
    with ds, tqdm(total=len(chosen), disable=not progress, unit="track", desc="export", leave=False) as bar:
        for t in chosen:
            info = ds.tracks[t]
            video, track = _track_dir_name(info)
            out = out_dir / video / (f"{track}.npz" if format == "npz" else track)
            written.append(export_track(ds.reader(t), out, format, fields, info))
            bar.update(1)
    return written
