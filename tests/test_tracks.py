"""bodybatch.splitting: splitting per-frame detections into per-person tracks.

``associate`` is measured against the ground truth of the corpus and of synthetic videos
(ids of every detection); ``ids`` and ``order`` on frames built in memory.
"""

import math

import numpy as np
import pytest

import bodybatch
from bodybatch.errors import ConfigError, FormatError
from bodybatch.splitting import TRACK_MODES, TrackUpdate, make_splitter

CORPUS_FILES = ["nlf_xz_0000", "nlf_xz_0001", "nlf_xz_0002", "nlf_zstd_0000", "legacy_v02_0000"]
J = 25



# --------------------------------------------------------------------------- helpers


def run_splitter(splitter, frames):
    """Feed ``frames``; check the update contract; return {key: [(t, detection index)]}.

    Contract: a key is never assigned after it ended, every key ends exactly once
    (in an update or in ``finish``), ``length`` counts its rows, keys of ``associate``
    are 0, 1, 2... in order of creation.
    """
    rows, ended = {}, set()
    for t, frame in enumerate(frames):
        update = splitter.update(t, frame)
        assert isinstance(update, TrackUpdate)
        indices = [j for _, j in update.assignments]
        assert len(set(indices)) == len(indices), "a detection went to two tracks"
        for key, j in update.assignments:
            assert key not in ended, f"track {key} got a detection after it ended"
            rows.setdefault(key, []).append((t, j))
        assert not set(update.ended) & ended and len(set(update.ended)) == len(update.ended)
        assert set(update.ended) <= set(rows)
        ended.update(update.ended)
    rest = splitter.finish()
    assert not set(rest) & ended and set(rest) | ended == set(rows)
    for key, key_rows in rows.items():
        assert splitter.length(key) == len(key_rows)
        assert splitter.kept(key) == (len(key_rows) >= splitter.min_length)
    return rows


def association_figures(frames, gt, **options):
    """Run ``associate`` and score it against the ground truth ids of ``gt`` (path of a
    NAME.gt.npz, or its ``counts`` and ``ids`` in a dict)."""
    gt = np.load(gt) if not isinstance(gt, dict) else gt
    ids, counts = gt["ids"], gt["counts"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    splitter = make_splitter("associate", **options)
    rows = run_splitter(splitter, frames)
    assert sorted(rows) == list(range(len(rows))), "keys are not 0, 1, 2... in creation order"
    firsts = [rows[k][0] for k in sorted(rows)]
    assert firsts == sorted(firsts), "keys are not in order of creation"
    truth = {k: np.array([ids[offsets[t] + j] for t, j in r]) for k, r in rows.items()}
    kept = {k: v for k, v in truth.items() if splitter.kept(k)}
    people = sorted(int(p) for p in np.unique(ids[ids >= 0]))
    share = {}
    for person in people:
        holders = [k for k, v in kept.items() if (v == person).any()]
        total = int((ids == person).sum())
        best = max([int((kept[k] == person).sum()) for k in holders], default=0)
        share[person] = (len(holders), round(best / total, 4))
    return {
        "frames": len(counts),
        "people": len(people),
        "tracks": len(rows),
        "kept": len(kept),
        "detections": int((ids >= 0).sum()),
        "spurious": int((ids < 0).sum()),
        "kept_pct": 100.0 * sum(int((v >= 0).sum()) for v in kept.values()) / max(1, (ids >= 0).sum()),
        "switches": sum(len(np.unique(v)) > 1 for v in kept.values()),
        "spurious_kept": sum(int((v < 0).sum()) for v in kept.values()),
        "share": share,
    }


def check_association(name, fig):
    print(
        f"{name}: {fig['frames']} frames, {fig['people']} people, {fig['detections']} "
        f"detections + {fig['spurious']} spurious -> {fig['tracks']} tracks, {fig['kept']} kept; "
        f"kept {fig['kept_pct']:.1f}% of true detections, {fig['switches']} switches, "
        f"{fig['spurious_kept']} spurious rows kept; per person (kept tracks, share): {fig['share']}"
    )
    for person, (n_tracks, share) in fig["share"].items():
        assert n_tracks == 1, f"{name}: person {person} is in {n_tracks} kept tracks"
        assert share >= 0.95, f"{name}: person {person}'s track holds only {share:.1%}"
    assert fig["switches"] == 0, f"{name}: {fig['switches']} kept tracks mix identities"
    assert fig["spurious_kept"] == 0, f"{name}: spurious detections in kept tracks"
    assert fig["kept"] == fig["people"]


def frame_of(joints, **extra):
    """A frame dict with N detections whose joints are ``joints`` (N, J, 3) mm."""
    joints = np.asarray(joints, np.float32).reshape(-1, J, 3)
    n = len(joints)
    boxes = np.zeros((n, 5), np.float32)
    return dict(joints=joints, boxes=boxes, joint_uncertainties=np.zeros((n, J), np.float32),
                camera={"intr": np.eye(3)[:2]}, **extra)  # fmt: skip


def person(x_mm, z_mm=4000.0):
    """Joints (J, 3) of a standing person centred at (x, 0, z) mm."""
    offsets = np.stack([np.linspace(-150, 150, J), np.linspace(-900, 800, J), np.zeros(J)], -1)
    return offsets + [x_mm, 0.0, z_mm]


# --------------------------------------------------------------------------- associate


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_associate_corpus(corpus_dir, name):
    path = corpus_dir / f"{name}.xz"
    fig = association_figures(bodybatch.read_predictions(path), corpus_dir / f"{name}.gt.npz")
    check_association(name, fig)


def test_associate_is_deterministic(corpus_dir):
    path = corpus_dir / "nlf_zstd_0000.xz"
    runs = [run_splitter(make_splitter("associate"), bodybatch.read_predictions(path)) for _ in range(2)]
    assert runs[0] == runs[1]


# synth.py --seed 5, 3 videos of 300-400 frames, 3-4 people: the joints only (the
# association reads nothing else). Written as files with their meshes, they took 13-54 s
# and ~650 MB; see tests/_synth_joints.py.
SYNTH_VIDEOS = dict(videos=3, seed=5, frames=(300, 400), people=(3, 4))


@pytest.fixture(scope="module")
def synth_videos(shared_dir):
    """[(frames, ground truth)] of the 3 synthetic videos, joints only."""
    from _synth_joints import joint_videos

    return joint_videos(shared_dir / "bench" / "synth.py", **SYNTH_VIDEOS)


def test_synth_joints_are_synth_py(shared_dir):
    """tests/_synth_joints.py gives exactly synth.py's joints, boxes aside (short video)."""
    from _synth_joints import joints_only, load_synth

    synth = load_synth(shared_dir / "bench" / "synth.py")
    body = synth.Body()
    rngs = [np.random.default_rng([5, 0]) for _ in range(2)]
    full, full_gt = synth.make_video(body, rngs[0], 36, 3)
    with joints_only(synth):
        light, light_gt = synth.make_video(body, rngs[1], 36, 3)
    assert synth.estimate.__name__ == "estimate"  # restored
    assert rngs[0].bit_generator.state == rngs[1].bit_generator.state  # every number drawn
    assert len(full) == len(light) and sum(map(len, full_gt)) > 36
    for f, g, ids, light_ids in zip(full, light, full_gt, light_gt):
        np.testing.assert_array_equal(ids, light_ids)
        for key in ("joints", "joint_uncertainties", "camera"):
            np.testing.assert_equal(f[key], g[key])
        np.testing.assert_array_equal(f["boxes"][:, 4], g["boxes"][:, 4])  # scores; boxes frame the joints


def test_associate_synthetic(synth_videos):
    """Association on the synthetic videos (~2 s without meshes: not marked slow)."""
    for i, (frames, gt) in enumerate(synth_videos):
        fig = association_figures(frames, gt)
        check_association(f"synth seed 5 video{i:04d}", fig)


def test_associate_gap_gate_and_restart():
    a, b = person(0.0), person(3000.0)  # 3 m apart
    step = np.array([20.0, 0, 0])  # mm per frame
    frames = []
    for t in range(30):
        dets = [a + t * step] if t not in (5, 6) else []  # a missed twice
        if 10 <= t < 13 or t >= 27:
            dets.append(b)  # b: 3 frames, then again after a long gap
        frames.append(frame_of(dets))
    splitter = make_splitter("associate", min_length=3, max_gap=5)
    updates = [splitter.update(t, f) for t, f in enumerate(frames)]
    assert [u.assignments for u in updates[:2]] == [[(0, 0)], [(0, 0)]]
    assert updates[7].assignments == [(0, 0)]  # a keeps its track across the gap
    assert updates[10].assignments == [(0, 0), (1, 1)]
    assert [k for u in updates for k in u.ended] == [1]
    assert updates[18].ended == [1]  # last seen at 12: 6 frames unmatched > max_gap 5
    assert updates[27].assignments == [(0, 0), (2, 1)]  # b comes back: a new track
    assert splitter.finish() == [0, 2]
    assert [splitter.length(k) for k in range(3)] == [28, 3, 3]
    assert splitter.kept(1) and splitter.kept(2)


@pytest.mark.parametrize(
    "gap, jump, keys",
    [(1, 300.0, [0, 0]), (1, 400.0, [0, 1]), (2, 400.0, [0, 0]), (2, 450.0, [0, 1]),
     (3, 490.0, [0, 0]), (3, 510.0, [0, 1]), (9, 490.0, [0, 0]), (9, 510.0, [0, 1])],
)  # fmt: skip
def test_associate_gate(gap, jump, keys):
    """gate_mm 500: 70% of it one frame after the last match, all of it from 3 frames on."""
    splitter = make_splitter("associate", gate_mm=500.0)
    got = [k for t, x in ((3, 0.0), (3 + gap, jump))
           for k, _ in splitter.update(t, frame_of([person(x)])).assignments]  # fmt: skip
    assert got == keys


def test_associate_first_frame_gate_is_tighter():
    """Someone appearing next to a person who was missed in that frame starts a new track."""
    splitter = make_splitter("associate", gate_mm=500.0)
    for t in range(5):
        splitter.update(t, frame_of([person(0.0)]))
    update = splitter.update(5, frame_of([person(450.0)]))  # person 0 missed, 450 mm off
    assert update.assignments == [(1, 0)]
    update = splitter.update(6, frame_of([person(450.0), person(0.0)]))
    assert update.assignments == [(1, 0), (0, 1)]


def test_associate_non_finite_joints_are_skipped():
    bad = person(0.0)
    bad[3, 1] = np.nan
    inf = person(3000.0)
    inf[0, 0] = np.inf
    splitter = make_splitter("associate")
    update = splitter.update(0, frame_of([bad, person(-2000.0), inf]))
    assert update.assignments == [(0, 1)]
    update = splitter.update(1, frame_of([person(0.0), person(-2000.0)]))
    assert update.assignments == [(1, 0), (0, 1)]
    assert splitter.finish() == [0, 1]


def test_associate_rejects_bad_joints():
    splitter = make_splitter("associate")
    with pytest.raises(FormatError, match=r"frame 0: no 'joints'"):
        splitter.update(0, {"boxes": np.zeros((1, 5), np.float32)})
    with pytest.raises(FormatError, match=r"frame 1: 'joints'.*\(N, J, 3\)"):
        splitter.update(1, {"joints": np.zeros((2, J), np.float32)})
    splitter.update(2, frame_of([person(0.0)]))
    with pytest.raises(FormatError, match=r"frame 3: 'joints' has 24 joints, not 25"):
        splitter.update(3, {"joints": np.zeros((1, 24, 3), np.float32)})


# --------------------------------------------------------------------------- order, ids


def test_order_routes_by_position():
    counts = [2, 3, 0, 1, 3]
    frames = [frame_of([person(1000.0 * i) for i in range(n)]) for n in counts]
    splitter = make_splitter("order", min_length=3)
    rows = run_splitter(splitter, frames)
    assert rows == {i: [(t, i) for t, n in enumerate(counts) if n > i] for i in range(3)}
    assert [splitter.kept(k) for k in range(3)] == [True, True, False]
    assert splitter.min_length == 3


def test_ids_routes_by_id():
    ids = [[7, 3], [3, -1, 7], [], [-5], [12, 3]]
    frames = [frame_of([person(0.0)] * len(i), ids=np.array(i, np.int64).reshape(-1)) for i in ids]
    splitter = make_splitter("ids", min_length=2)
    rows = run_splitter(splitter, frames)
    assert rows == {7: [(0, 0), (1, 2)], 3: [(0, 1), (1, 0), (4, 1)], 12: [(4, 0)]}
    assert splitter.kept(3) and splitter.kept(7) and not splitter.kept(12)
    with pytest.raises(KeyError):
        splitter.length(99)


def test_ids_custom_key_and_dtypes():
    splitter = make_splitter("ids", id_key="person")
    for t, dtype in enumerate((np.int32, np.uint16, np.int8)):
        frame = frame_of([person(0.0), person(900.0)], person=np.array([1, 4], dtype))
        assert splitter.update(t, frame).assignments == [(1, 0), (4, 1)]
    assert splitter.finish() == [1, 4]


@pytest.mark.parametrize(
    "ids, message",
    [
        (None, r"frame 2: no 'ids'"),
        (np.array([1, 1]), r"frame 2: 'ids' repeats id\(s\) \[1\]"),
        (np.array([1.0, 2.0]), r"frame 2: 'ids' is a float64 array of shape \(2,\)"),
        (np.array([[1, 2]]), r"frame 2: 'ids' is a int64 array of shape \(1, 2\)"),
        ([1, 2], r"frame 2: 'ids' is a list"),
        (np.array([1, 2, 3]), r"frame 2: 'ids' has 3 ids for 2 detections"),
        (np.array([True, False]), r"frame 2: 'ids' is a bool array"),
    ],
)
def test_ids_invalid(ids, message):
    splitter = make_splitter("ids")
    for t in range(2):
        splitter.update(t, frame_of([person(0.0), person(900.0)], ids=np.array([0, 1])))
    frame = frame_of([person(0.0), person(900.0)])
    if ids is not None:
        frame["ids"] = ids
    with pytest.raises(FormatError, match=message):
        splitter.update(2, frame)


def test_negative_ids_may_repeat():
    splitter = make_splitter("ids")
    update = splitter.update(0, frame_of([person(0.0)] * 3, ids=np.array([-1, 5, -1])))
    assert update.assignments == [(5, 1)] and update.ended == []


# --------------------------------------------------------------------------- all modes


@pytest.mark.parametrize("mode", TRACK_MODES)
def test_empty_frames(mode):
    empty = {
        "boxes": np.zeros((0, 5), np.float32),
        "vertices": np.zeros((0, 13718, 3), np.float32),
        "joints": np.zeros((0, J, 3), np.float32),
        "joint_uncertainties": np.zeros((0, J), np.float32),
        "ids": np.zeros(0, np.int64),
    }
    splitter = make_splitter(mode, min_length=1)
    assert splitter.update(0, empty) == TrackUpdate([], [])
    full = frame_of([person(0.0)], ids=np.array([0]))
    assert splitter.update(1, full).assignments == [(0, 0)]
    for t in range(2, 20):
        assert splitter.update(t, dict(empty)).assignments == []
    assert splitter.update(20, {"joints": np.zeros((0,), np.float32), "ids": np.zeros(0, int)}).assignments == []
    ended = splitter.finish()
    assert ended == ([] if mode == "associate" else [0])  # associate: ended after max_gap
    assert splitter.length(0) == 1 and splitter.kept(0)


@pytest.mark.parametrize("mode", TRACK_MODES)
def test_frame_order_and_finish(mode):
    splitter = make_splitter(mode)
    frame = frame_of([person(0.0)], ids=np.array([0]))
    splitter.update(3, frame)
    with pytest.raises(ValueError, match="does not follow"):
        splitter.update(3, frame)
    splitter.update(5, frame)  # gaps in t are allowed
    assert splitter.finish() == [0] and splitter.length(0) == 2
    with pytest.raises(ValueError, match="finished"):
        splitter.update(6, frame)
    with pytest.raises(FormatError, match="frame 0 is a list"):
        make_splitter(mode).update(0, [])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "foo"}, "tracks.mode must be one of associate, ids, order; got 'foo'"),
        ({"mode": None}, "tracks.mode must be one of associate, ids, order; got None"),
        ({"min_length": 0}, "tracks.min_length must be an integer >= 1; got 0"),
        ({"min_length": 2.5}, "tracks.min_length must be an integer >= 1; got 2.5"),
        ({"max_gap": -1}, "tracks.max_gap must be an integer >= 0; got -1"),
        ({"max_gap": True}, "tracks.max_gap must be an integer >= 0; got True"),
        ({"gate_mm": 0}, "tracks.gate_mm must be a finite number > 0 \\(mm\\); got 0"),
        ({"gate_mm": math.inf}, "tracks.gate_mm must be a finite number > 0 \\(mm\\); got inf"),
        ({"gate_mm": "500"}, "tracks.gate_mm must be a finite number > 0 \\(mm\\); got '500'"),
        ({"id_key": ""}, "tracks.id_key must be a non-empty string; got ''"),
    ],
)
def test_invalid_config(options, message):
    options = {"mode": "associate", **options}
    with pytest.raises(ConfigError, match=message):
        make_splitter(options.pop("mode"), **options)


def test_config_defaults_are_accepted():
    """The options bodybatch.config hands over (all of them, for every mode) are accepted."""
    from bodybatch.config import SCHEMA

    options = {k.split(".", 1)[1]: v[1] for k, v in SCHEMA.items() if k.startswith("tracks.")}
    for mode in TRACK_MODES:
        splitter = make_splitter(mode, **{k: v for k, v in options.items() if k != "mode"})
        assert splitter.min_length == options["min_length"]
    assert set(SCHEMA["tracks.mode"][0]) == set(TRACK_MODES)


# --------------------------------------------------------------------------- assignment


def _brute_force_min_cost(cost):
    """Smallest total cost over all complete matchings, by enumeration."""
    import itertools

    n, m = cost.shape
    if n > m:
        return _brute_force_min_cost(cost.T)
    return min((sum(cost[i, j] for i, j in enumerate(cols)) for cols in itertools.permutations(range(m), n)),
               default=0.0)  # fmt: skip


def test_min_cost_assignment_is_optimal_against_enumeration():
    from bodybatch._assignment import min_cost_assignment

    rng = np.random.default_rng(7)
    for trial in range(400):
        n, m = rng.integers(0, 6, size=2)
        if trial % 3 == 0:
            cost = rng.integers(0, 3, (n, m)).astype(float)  # many ties
        else:
            cost = rng.random((n, m)) * 100
        if trial % 5 == 0:
            cost[cost > 60] = 1e6  # forbidden pairs, as tracking uses them
        rows, cols = min_cost_assignment(cost)
        assert len(rows) == len(cols) == min(n, m)
        assert np.all(np.diff(rows) > 0) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(_brute_force_min_cost(cost), abs=1e-6), cost


def test_min_cost_assignment_rejects_bad_costs():
    from bodybatch._assignment import min_cost_assignment

    with pytest.raises(ValueError, match="2-D"):
        min_cost_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        min_cost_assignment(np.array([[0.0, np.inf]]))
