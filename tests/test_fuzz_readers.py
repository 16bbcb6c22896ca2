"""Property-based fuzzing of both readers on mutated real files: only bodybatch's
typed errors may escape; no crash, hang or unbounded allocation."""

import contextlib
import resource

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bodybatch
from bodybatch.errors import BodybatchError

from _helpers import gt_tracks



@contextlib.contextmanager
def address_space_limit(extra_bytes=1 << 30):
    """Cap this process's address space at its current size + ``extra_bytes``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (current + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def seeds(corpus_dir, tmp_path_factory):
    """A real track file (bodybatch codec) and a real prediction file, both small."""
    import bodycompress

    tmp = tmp_path_factory.mktemp("fuzz")
    track = gt_tracks(corpus_dir / "nlf_xz_0001.xz", min_length=5, max_frames=12)[0]
    small = {k: (v[:, ::16] if k in ("vertices", "vertex_uncertainties") else v) for k, v in track.items()}
    bodybatch.write_track(tmp / "track.xz", small, {"m": 1}, chunk_size=4)
    frames = list(bodybatch.read_predictions(corpus_dir / "nlf_zstd_0000.xz"))[:3]
    for name, compression in (("preds_zstd.xz", "zstd"), ("preds_xz.xz", "xz")):
        with bodycompress.BodyCompressor(str(tmp / name), {"video_path": "v.mp4"}, compression=compression) as w:
            for f in frames:
                w.append(**{k: (np.array(v)[:, ::32] if k in ("vertices", "vertex_uncertainties") else
                                (np.array(v) if not isinstance(v, dict) else v)) for k, v in f.items()})
    return {p.name: p.read_bytes() for p in tmp.iterdir()} | {"_dir": tmp}


mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("duplicate"), st.floats(0, 1, exclude_max=True), st.integers(1, 4096)),
)


def mutate(data, ops):
    data = bytearray(data)
    for kind, where, value in ops:
        pos = int(where * len(data)) if data else 0
        if kind == "flip" and data:
            data[pos] ^= value
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = bytes([value]) * 8
        elif kind == "duplicate" and data:
            data[pos:pos] = data[pos : pos + value]
    return bytes(data)


def _read_track(path):
    with bodybatch.open_track(path) as reader:
        reader.to_arrays()
        len(reader), reader.metadata
        for _ in reader:
            pass


def _read_predictions(path):
    with bodybatch.read_predictions(path) as reader:
        reader.metadata
        for _ in reader:
            pass


@pytest.mark.slow
@settings(max_examples=1000, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_track_reader(seeds, ops):
    path = seeds["_dir"] / "mutated_track.xz"
    path.write_bytes(mutate(seeds["track.xz"], ops))
    with address_space_limit():
        try:
            _read_track(path)
        except BodybatchError:
            pass


@pytest.mark.slow
@settings(max_examples=1000, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(ops=st.lists(mutation, min_size=1, max_size=4), which=st.sampled_from(["preds_zstd.xz", "preds_xz.xz"]))
def test_fuzz_prediction_reader(seeds, ops, which):
    path = seeds["_dir"] / "mutated_preds.xz"
    path.write_bytes(mutate(seeds[which], ops))
    with address_space_limit():
        try:
            _read_predictions(path)
        except BodybatchError:
            pass
