"""Streaming split of a video's per-frame detections into per-person tracks.

A splitter is fed a video's frames one by one (each holding all detections of that
frame, in detector order) and says which detection goes to which track and when a track
ends, so a worker reads a video once and appends each detection to its track's encoder.
It keeps state for the open tracks only, plus one row counter per track; never frames::

    splitter = make_splitter("associate", min_length=10, max_gap=10, gate_mm=500.0)
    for t, frame in enumerate(frames):
        update = splitter.update(t, frame)
        update.assignments  # [(track_key, detection_index), ...] of frame t
        update.ended        # track keys that receive no more detections
    ended = splitter.finish()  # the keys still open

Modes (:data:`TRACK_MODES`):

- ``"ids"``: ``frame[id_key]``, an integer array ``(N,)``, holds the person ids = track
  keys; negative ids (unassigned) are skipped. Tracks end at :meth:`~Splitter.finish`.
- ``"order"``: detection ``i`` of every frame is track ``i``; tracks end at finish.
- ``"associate"``: detections are matched to open tracks by their 3D joints, see
  :class:`AssociateSplitter`; keys are 0, 1, 2... in order of creation.

The splitter only counts rows: the caller drops tracks shorter than ``min_length``
(:meth:`~Splitter.kept`).
"""

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from bodybatch._assignment import min_cost_assignment
from bodybatch.errors import ConfigError, FormatError

__all__ = ["TRACK_MODES", "TrackUpdate", "Splitter", "AssociateSplitter", "make_splitter"]

TRACK_MODES = ("associate", "ids", "order")
_COUNT_KEYS = ("joints", "vertices", "boxes")  # arrays whose first axis is the detection


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame did to the tracks.

    Attributes
    ----------
    assignments : list of (int, int)
        ``(track_key, detection_index)`` for the detections of the frame that joined a
        track, by increasing detection index. Detections not listed belong to no track.
    ended : list of int
        Keys of the tracks that ended at this frame (they get no more detections).
    """

    assignments: list = field(default_factory=list)
    ended: list = field(default_factory=list)


def make_splitter(mode, *, min_length=10, max_gap=10, gate_mm=500.0, id_key="ids"):
    """A new splitter for one video.

    Parameters
    ----------
    mode : {"ids", "order", "associate"}
        How detections become tracks (see the module docstring).
    min_length : int
        Tracks with fewer rows (frames) are dropped by the caller, >= 1.
    max_gap : int
        ``associate``: a track not matched for more than this many consecutive frames
        ends, >= 0. Ignored by the other modes.
    gate_mm : float
        ``associate``: largest mean per-joint distance (mm) between a detection and a
        track's predicted joints that may be matched, > 0. Ignored by the other modes.
    id_key : str
        ``ids``: frame key of the per-detection person ids. Ignored by the other modes.

    Returns
    -------
    Splitter

    Raises
    ------
    ConfigError
        An option is invalid; the message names it and its allowed values.
    """
    if not isinstance(mode, str) or mode not in TRACK_MODES:
        raise ConfigError(f"tracks.mode must be one of {', '.join(TRACK_MODES)}; got {mode!r}")
    def number(value, kind):
        return isinstance(value, kind) and not isinstance(value, bool)

    ok = number(min_length, numbers.Integral) and min_length >= 1
    _need(ok, "min_length", "an integer >= 1", min_length)
    _need(number(max_gap, numbers.Integral) and max_gap >= 0, "max_gap", "an integer >= 0", max_gap)
    ok = number(gate_mm, numbers.Real) and math.isfinite(gate_mm) and gate_mm > 0
    _need(ok, "gate_mm", "a finite number > 0 (mm)", gate_mm)
    _need(isinstance(id_key, str) and id_key != "", "id_key", "a non-empty string", id_key)
    if mode == "ids":
        return IdsSplitter(int(min_length), id_key)
    if mode == "order":
        return OrderSplitter(int(min_length))
    return AssociateSplitter(int(min_length), int(max_gap), float(gate_mm))


def _need(ok, key, rule, value):
    if not ok:
        raise ConfigError(f"tracks.{key} must be {rule}; got {value!r}")


def _count(frame, t):
    """Number of detections of ``frame`` (first axis of joints, vertices or boxes), or None."""
    if not isinstance(frame, dict):
        raise FormatError(f"frame {t} is a {type(frame).__name__}, not a dict")
    for key in _COUNT_KEYS:
        if key in frame:
            shape = np.shape(frame[key])
            if len(shape) < 1:
                raise FormatError(f"frame {t}: {key!r} has shape {shape}, expected (N, ...)")
            return shape[0]
    return None


class Splitter:
    """Base of the splitters: frame order checks and per-track row counts.

    Attributes
    ----------
    min_length : int
        Tracks with fewer rows are to be dropped (see :meth:`kept`).
    """

    def __init__(self, min_length):
        self.min_length = min_length
        self._lengths = {}  # track key -> rows; one int per track ever seen, no arrays
        self._open = set()
        self._t = None
        self._finished = False

    def update(self, t, frame):
        """Route the detections of frame ``t``.

        Parameters
        ----------
        t : int
            Frame index, strictly increasing from call to call (gaps allowed).
        frame : dict
            One frame of a prediction file.

        Returns
        -------
        TrackUpdate

        Raises
        ------
        FormatError
            The frame lacks what the mode needs (message names the key and ``t``).
        ValueError
            ``t`` does not increase, or :meth:`finish` was called.
        """
        if self._finished:
            raise ValueError("the splitter is finished")
        if self._t is not None and t <= self._t:
            raise ValueError(f"frame index {t} does not follow {self._t}")
        assignments, ended = self._route(t, frame)
        self._t = t
        for key, _ in assignments:
            self._lengths[key] = self._lengths.get(key, 0) + 1
            self._open.add(key)
        self._open.difference_update(ended)
        return TrackUpdate(assignments, ended)

    def finish(self):
        """End the video: the sorted keys of the tracks still open (all end now)."""
        self._finished = True
        ended, self._open = sorted(self._open), set()
        return ended

    def length(self, track_key):
        """Rows assigned to ``track_key`` so far (KeyError for an unknown key)."""
        return self._lengths[track_key]

    def kept(self, track_key):
        """Whether the track has at least ``min_length`` rows (the caller keeps it)."""
        return self.length(track_key) >= self.min_length

    def _route(self, t, frame):
        raise NotImplementedError


class OrderSplitter(Splitter):
    """Detection ``i`` of each frame goes to track ``i``."""

    def _route(self, t, frame):
        n = _count(frame, t)
        if n is None:
            raise FormatError(f"frame {t}: no detection array ({', '.join(_COUNT_KEYS)})")
        return [(i, i) for i in range(n)], []


class IdsSplitter(Splitter):
    """Track key = ``frame[id_key][i]``, negative ids skipped."""

    def __init__(self, min_length, id_key):
        super().__init__(min_length)
        self.id_key = id_key

    def _route(self, t, frame):
        n, key = _count(frame, t), self.id_key
        ids = frame.get(key)
        if ids is None:
            raise FormatError(f"frame {t}: no {key!r} (per-detection person ids)")
        if not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu" or ids.ndim != 1:
            what = f"{ids.dtype} array of shape {ids.shape}" if isinstance(ids, np.ndarray) else type(ids).__name__
            raise FormatError(f"frame {t}: {key!r} is a {what}, expected an integer array (N,)")
        if n is not None and len(ids) != n:
            raise FormatError(f"frame {t}: {key!r} has {len(ids)} ids for {n} detections")
        valid = np.flatnonzero(ids >= 0)
        values, counts = np.unique(ids[valid], return_counts=True)
        if (counts > 1).any():
            raise FormatError(f"frame {t}: {key!r} repeats id(s) {values[counts > 1].tolist()}")
        return [(int(ids[i]), int(i)) for i in valid], []


class AssociateSplitter(Splitter):
    """Tracking by 3D joints: optimal gated assignment to predicted track positions.

    An open track keeps its last matched joints ``(J, 3)`` mm, that frame's index and a
    smoothed velocity ``v`` (mm/frame) of its joint centroid; ``g`` frames after its last
    match it is predicted at ``last + v * (d + d**2 + ... + d**g)``, ``d = DAMPING``.
    The cost of a (track, detection) pair is the mean per-joint Euclidean distance (mm)
    of prediction and detection. A pair may match if its cost is within the track's
    gate: ``GATE_FIRST * gate_mm`` one frame after its last match, growing linearly to
    ``gate_mm`` ``GATE_RAMP_FRAMES`` frames later (a newcomer next to a person missed
    for one frame must not take over that person's track).
    An optimal assignment (Hungarian method) picks the most matches, then the least
    total cost. Unmatched detections start new tracks, keyed 0, 1, 2... in order of
    creation (by detection index within a frame); a track unmatched for more than
    ``max_gap`` consecutive frames ends.

    Detections whose joints are not all finite are skipped (never matched, never
    starting a track). Frames need ``joints (N, J, 3)`` with the same J throughout.
    """

    # Measured on the corpus and 27 synthetic videos (shared/bench/synth.py): a smoothed
    # centroid velocity lowers the cost of true matches by 5% one frame after the last
    # match and by 15% after a miss; per-joint velocities do worse.
    DAMPING = 0.9  # velocity kept per extrapolated frame
    SMOOTHING = 0.1  # weight of the newest velocity measurement
    GATE_FIRST = 0.7  # true matches measured <= 0.5 gate_mm at one frame, default gate
    GATE_RAMP_FRAMES = 2

    def __init__(self, min_length, max_gap, gate_mm):
        super().__init__(min_length)
        self.max_gap, self.gate_mm = max_gap, gate_mm
        self._tracks = {}  # key -> [joints (J, 3) mm, velocity (3,) mm/frame, t, centroid (3,) mm]
        self._next_key = 0
        self._n_joints = None

    def _route(self, t, frame):
        _count(frame, t)
        if "joints" not in frame:
            raise FormatError(f"frame {t}: no 'joints' (needed by tracks.mode associate)")
        joints = np.asarray(frame["joints"])
        if joints.shape[:1] == (0,):  # no detections, whatever the trailing axes
            joints = np.zeros((0, self._n_joints or 0, 3))
        if joints.ndim != 3 or joints.shape[2] != 3 or joints.dtype.kind not in "fiu":
            raise FormatError(f"frame {t}: 'joints' is a {joints.dtype} array of shape "
                              f"{joints.shape}, expected numbers (N, J, 3)")  # fmt: skip
        if len(joints) and self._n_joints not in (None, joints.shape[1]):
            raise FormatError(f"frame {t}: 'joints' has {joints.shape[1]} joints, not {self._n_joints}")
        self._n_joints = joints.shape[1] if len(joints) else self._n_joints
        joints = joints.astype(np.float64)
        usable = np.flatnonzero(np.isfinite(joints).all(axis=(1, 2)))
        keys = list(self._tracks)
        matches = self._match_tracks(keys, joints[usable], t) if keys and len(usable) else {}
        assignments = []
        centroids = joints[usable].mean(axis=1) if len(usable) else None
        for c, i in enumerate(usable.tolist()):
            key = matches.get(c)
            if key is None:
                key, self._next_key = self._next_key, self._next_key + 1
                self._tracks[key] = [joints[i], np.zeros(3), t, centroids[c]]
            else:
                _, velocity, last_t, last_centroid = self._tracks[key]
                step = (centroids[c] - last_centroid) / (t - last_t)
                velocity = self.SMOOTHING * step + (1 - self.SMOOTHING) * velocity
                self._tracks[key] = [joints[i], velocity, t, centroids[c]]
            assignments.append((key, i))
        ended = [k for k in keys if t - self._tracks[k][2] > self.max_gap]
        for key in ended:
            del self._tracks[key]
        return assignments, ended

    def _match_tracks(self, keys, joints, t):
        """{detection row of ``joints``: track key} by gated optimal assignment."""
        d = self.DAMPING
        gaps = np.array([t - self._tracks[k][2] for k in keys], np.float64)
        reach = gaps if d == 1 else d * (1 - d**gaps) / (1 - d)  # damped frames of motion
        predicted = np.stack([self._tracks[k][0] + self._tracks[k][1] * r
                              for k, r in zip(keys, reach)])  # fmt: skip
        diff = joints[None] - predicted[:, None]  # (tracks, detections, J, 3)
        cost = np.sqrt(np.einsum("tdjc,tdjc->tdj", diff, diff)).mean(axis=2)
        ramp = self.GATE_FIRST + (1 - self.GATE_FIRST) * (gaps - 1) / self.GATE_RAMP_FRAMES
        allowed = cost <= (self.gate_mm * np.minimum(ramp, 1.0))[:, None]
        # A forbidden pair costs more than any set of allowed ones: most matches first.
        forbidden = self.gate_mm * (min(cost.shape) + 1)
        rows, cols = min_cost_assignment(np.where(allowed, cost, forbidden))
        return {int(c): keys[r] for r, c in zip(rows, cols) if allowed[r, c]}

    def finish(self):
        self._tracks.clear()
        return super().finish()
