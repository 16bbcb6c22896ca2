"""Bundled structures: the spatial structure of a known mesh topology, shipped with
bodybatch so that format 3.1 files name it instead of storing it.

Every track of a topology would otherwise store its own order and parents (~50 KB
for 13,718 vertices: 7% of the corpus's format 3.0 bytes). As bodycompress ships a
vertex order for SMPL and SMPL-X, bodybatch ships structures built once from a
template mesh (``scripts/make_structures.py``); a writer uses one only when it fits
the track's first row (:func:`find_bundled`), so another mesh with the same vertex
count gets a structure of its own.

Files: ``bodybatch/data/structure_<name>.msgpack`` (msgpack map: ``name``,
``n_points``, ``n_parents``, ``curve`` and ``steps`` coded as a format 3.0 header
group, ``miss_mm``: the template's median centroid miss in mm).
"""

import functools
from pathlib import Path

import numpy as np

from bodybatch import _msgpack
from bodybatch.errors import FormatError

__all__ = ["BUNDLED", "bundled_structure", "find_bundled", "median_miss_mm", "MISS_FACTOR"]

DATA = Path(__file__).resolve().parents[1] / "data"

#: Bundled structure name -> (n_points, n_parents) it is for.
BUNDLED = {"anny13718": (13718, 4)}

#: A bundled structure fits a track when the median miss of its first row is at most
#: this many times the template's (corpus tracks: 0.95-1.3x; a shuffled topology: ~300x).
MISS_FACTOR = 4.0


@functools.lru_cache(maxsize=None)
def _load(name):
    from bodybatch.codec import group3

    path = DATA / f"structure_{name}.msgpack"
    entry = _msgpack.unpackb(path.read_bytes(), where=str(path))
    n, m = BUNDLED[name]
    structure = group3.decode_structure(entry["curve"], entry["steps"], n, m, f"{path}: ")
    return structure, float(entry["miss_mm"])


def bundled_structure(name, n_points, n_parents, where=""):
    """The bundled :class:`~bodybatch.codec.structure.VertexStructure` called ``name``
    (sorted parents); FormatError if bodybatch has no such structure for that size."""
    if BUNDLED.get(name) != (n_points, n_parents):
        known = ", ".join(f"{k} ({n} points, {m} parents)" for k, (n, m) in BUNDLED.items())
        raise FormatError(f"{where}no bundled structure {name!r} for {n_points} points and "
                          f"{n_parents} parents (this bodybatch has: {known})")  # fmt: skip
    return _load(name)[0]


def median_miss_mm(points_mm, structure):
    """Median distance (mm) from each point to its parents' centroid; ``points_mm``
    (N, 3) in the original point order, parents past N (the virtual zero) ignored."""
    x = np.asarray(points_mm, np.float64)[structure.order]
    parents = structure.parents[1:]
    real = parents < len(x)
    total = np.where(real[..., None], x[np.minimum(parents, len(x) - 1)], 0.0).sum(axis=1)
    centroid = total / np.maximum(real.sum(axis=1), 1)[:, None]
    return float(np.median(np.linalg.norm(x[1:] - centroid, axis=1))) if len(x) > 1 else 0.0


def find_bundled(points_mm, n_parents):
    """Name of the bundled structure that fits these (N, 3) points (mm, a track's
    first row), or None."""
    n = len(points_mm)
    for name, size in BUNDLED.items():
        if size != (n, n_parents):
            continue
        structure, template_miss = _load(name)
        if median_miss_mm(points_mm, structure) <= MISS_FACTOR * template_miss:
            return name
    return None
