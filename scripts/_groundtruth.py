"""Person tracks cut from a prediction file by its ground-truth ids (for tests and
benchmarks: the corpus and ``synth.py`` write ``NAME.gt.npz`` beside ``NAME.xz``).

``NAME.gt.npz`` holds ``counts`` (detections per frame) and ``ids`` (the person id of
every detection in file order, -1 for spurious ones).
"""

from pathlib import Path

import numpy as np

from bodybatch._rows import DETECTION_FIELDS

__all__ = ["gt_tracks", "gt_path"]


def gt_path(path):
    """``NAME.gt.npz`` beside the prediction file ``NAME.xz``."""
    path = Path(path)
    return path.with_name(path.name[: -len(path.suffix)] + ".gt.npz")


def gt_tracks(path, min_length=2, max_frames=None):
    """``{person id: track}`` of a prediction file, persons in id order.

    Parameters
    ----------
    path : path of a bodycompress prediction file with ``.gt.npz`` beside it.
    min_length : int
        Persons with fewer detections are left out.
    max_frames : int, optional
        Read only the first frames.

    Returns
    -------
    dict
        Per person: ``vertices (T, V, 3)`` mm, ``joints (T, J, 3)`` mm,
        ``vertex_uncertainties (T, V)`` and ``joint_uncertainties (T, J)`` m,
        ``boxes (T, B)``, ``frame_index (T,)`` and, when the file has cameras,
        ``camera`` (list of T dicts).
    """
    from bodybatch import read_predictions

    gt = np.load(gt_path(path))
    ids, counts = gt["ids"], gt["counts"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rows = {}
    for t, frame in enumerate(read_predictions(path)):
        if max_frames is not None and t >= max_frames:
            break
        for j, pid in enumerate(ids[offsets[t] : offsets[t + 1]]):
            if pid < 0:
                continue
            row = {k: np.array(frame[k][j]) for k in DETECTION_FIELDS if k in frame}
            row["camera"] = frame.get("camera")
            row["frame_index"] = t
            rows.setdefault(int(pid), []).append(row)
    tracks = {}
    for pid, person in sorted(rows.items()):
        if len(person) < min_length:
            continue
        track = {k: np.stack([r[k] for r in person]) for k in DETECTION_FIELDS if k in person[0]}
        track["frame_index"] = np.array([r["frame_index"] for r in person])
        if person[0]["camera"] is not None:
            track["camera"] = [r["camera"] for r in person]
        tracks[pid] = track
    return tracks
