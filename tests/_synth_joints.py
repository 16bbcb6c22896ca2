"""The frames of ``../shared/bench/synth.py`` without their meshes, for tests that read
only joints (imported, not collected).

:func:`joint_videos` runs synth.py's own ``make_video`` with two of its functions
replaced: ``estimate`` poses only the bones (no 13,718-vertex skinning) and
``uncertainties`` of the vertices only draws its random numbers. Every random number
synth.py draws is still drawn, in the same order, so ``joints``,
``joint_uncertainties``, the detections per frame, their order and the ground truth
are exactly those of ``synth.py --seed S`` (``tests/test_tracks.py`` checks this on
a short video). ``vertices`` is a stand-in (the joints), so ``boxes`` frame the joints,
and ``vertex_uncertainties`` is zeros ``(N, 1)``.
"""

import contextlib
import importlib.util

import numpy as np

__all__ = ["load_synth", "joint_videos", "joints_only"]


def load_synth(path):
    """Import synth.py from ``path`` as a module (it needs only numpy)."""
    spec = importlib.util.spec_from_file_location("_bench_synth", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _draw_normal(rng, scale, shape, block=32):
    """Draw ``rng.normal(0, scale, shape)`` and discard it, ``block`` rows at a time:
    the generator ends in the same state without holding the whole array."""
    for start in range(0, shape[0], block):
        rng.standard_normal((min(block, shape[0] - start),) + tuple(shape[1:]))


@contextlib.contextmanager
def joints_only(synth):
    """Within the block, ``synth.make_video`` skips the meshes (see the module doc)."""
    estimate, uncertainties = synth.estimate, synth.uncertainties
    pending = []  # the vertex count of the person whose vertex uncertainties come next

    def estimate_joints(body, rng, shape, gtf, local, scale, cam_from_world):
        # synth.estimate, step by step, with the vertex work replaced by its draws.
        n = len(gtf)
        n_vertices = len(body.rest_vertices[shape])
        noisy_local = local + rng.normal(0, 0.03, local.shape) * (body.amplitude > 0)
        noisy_scale = scale * (1 + rng.normal(0, 0.005, n))
        heads = _bone_heads(synth, body, shape, gtf, noisy_local, noisy_scale)
        rng.integers(n_vertices, size=6)  # smooth_field(rng, rest, n, 0.003): 6 bumps
        rng.normal(0, 0.003, (n, 6, 3))
        joints = heads[:, body.joint_ids] @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
        root = joints[:, :1]
        ray = root / np.linalg.norm(root, axis=-1, keepdims=True)
        slide = rng.normal(0, 0.025, (n, 1, 1)) * ray + rng.normal(0, 0.004, (n, 1, 3))
        _draw_normal(rng, 0.0003, (n, n_vertices, 3))  # per-vertex noise
        joints = joints + slide + rng.normal(0, 0.002, joints.shape)
        joints = (joints * 1000).astype(np.float32)
        pending.append(n_vertices)
        return joints.copy(), joints  # vertices stand-in: the joints

    def uncertainties_or_draws(rng, rest, n_frames, count):
        if not pending:
            return uncertainties(rng, rest, n_frames, count)
        n_vertices = pending.pop()  # synth.uncertainties(rng, rest, n_frames, n_vertices)'s draws
        synth.smooth_signal(rng, n_frames, 30.0, fmax=0.5)
        rng.integers(min(n_vertices, len(rest)), size=6)
        rng.normal(0, 0.05, (n_frames, 6, 3))
        return np.zeros((n_frames, 1), np.float32)

    synth.estimate, synth.uncertainties = estimate_joints, uncertainties_or_draws
    try:
        yield
    finally:
        synth.estimate, synth.uncertainties = estimate, uncertainties


def _bone_heads(synth, body, shape, gtf, local_rot, scale):
    """``body.pose(...)[1]`` (bone heads, m) without skinning the vertices."""
    rest = body.rest_bones[shape]
    rest_inv = np.linalg.inv(rest)
    n, nj = local_rot.shape[:2]
    d = np.tile(np.eye(4), (n, nj, 1, 1))
    d[:, :, :3, :3] = synth.rodrigues(local_rot)
    world = np.zeros((n, nj, 4, 4))
    for j in range(nj):
        p = body.parents[j]
        if p < 0:
            world[:, j] = gtf @ rest[j] @ d[:, j]
        else:
            world[:, j] = world[:, p] @ (rest_inv[p] @ rest[j]) @ d[:, j]
    return world[:, :, :3, 3]


def joint_videos(synth_path, *, videos, seed, frames, people, fps=30.0):
    """What ``synth.py OUT --videos V --seed S --frames MIN MAX --people MIN MAX``
    generates, without meshes: a list of (frames, ground truth) per video, frames
    holding ``joints (N, 25, 3)`` mm, ``boxes (N, 5)`` and ``joint_uncertainties
    (N, 25)`` m; ground truth ``{"counts": (T,), "ids": (sum N,)}`` as NAME.gt.npz."""
    synth = load_synth(synth_path)
    body = synth.Body()
    out = []
    with joints_only(synth):
        for i in range(videos):  # as synth.main
            rng = np.random.default_rng([seed, i])
            n_frames = int(rng.integers(frames[0], frames[1] + 1))
            n_people = int(rng.integers(people[0], people[1] + 1))
            video, gt_ids = synth.make_video(body, rng, n_frames, n_people, fps)
            video = [{k: f[k] for k in ("joints", "boxes", "joint_uncertainties")} for f in video]
            counts = np.array([len(g) for g in gt_ids])
            ids = np.concatenate(gt_ids) if gt_ids else np.zeros(0, np.int32)
            out.append((video, {"counts": counts, "ids": ids}))
    return out
