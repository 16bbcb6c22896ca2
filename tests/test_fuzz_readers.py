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


# --- the chunk and layout maps: CRC-valid files whose maps have the wrong shape ---------------

_ODD_VALUES = [None, True, 0, -1, 2**62, 1.5, "", "int16", "<f4", "zz9", b"", b"\x00" * 16, [], [b""], {}, {"x": 1}]


def _paths(node, path=()):
    """Every entry of a nested map/list, as key paths."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield path + (key,)
        yield from _paths(value, path + (key,))


def _structure_mutated(tree, path, op):
    import copy

    tree = copy.deepcopy(tree)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = _ODD_VALUES[op]
    return tree


@pytest.fixture(scope="module")
def encoded_chunks(corpus_dir):
    """Per codec format: (codec, layout, its header map, an encoded chunk, n rows) of a
    small real track (every 16th vertex, 6 rows, boxes and camera included)."""
    from bodybatch.codec import get_codec
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS

    track = gt_tracks(corpus_dir / "nlf_xz_0001.xz", min_length=5, max_frames=6)[0]
    chunk = {k: np.asarray(track[k])[:, ::16] if k in ("vertices", "vertex_uncertainties") else np.asarray(track[k])
             for k in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties", "boxes")}  # fmt: skip
    chunk["camera"] = {k: np.stack([c[k] for c in track["camera"]]) for k in track["camera"][0]}
    out = {}
    for name, options in (("v1", {}), ("v2.0", {"predictor": 2}), ("v3", {**V2_OPTIONS, "structure": "own"})):
        codec = get_codec("bodybatch", **options)
        layout = codec.make_layout(chunk)
        encoded, _ = codec.encode_chunk(chunk, layout)
        out[name] = (codec, layout, codec.layout_to_header(layout), encoded, len(chunk["vertices"]))
    return out


@settings(max_examples=300, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data(), which=st.sampled_from(["v1", "v2.0", "v3"]), op=st.sampled_from(["delete"] + list(range(16))))
def test_chunk_and_layout_of_the_wrong_shape_give_format_errors(encoded_chunks, data, which, op):
    """Any entry of a chunk's map or of the header's layout deleted or replaced by a value
    of another type or size: the decoder returns or raises FormatError, nothing else."""
    from bodybatch.errors import FormatError

    codec, layout, header, encoded, n = encoded_chunks[which]
    in_header = data.draw(st.booleans())
    tree = header if in_header else encoded
    paths = list(_paths(tree))
    path = data.draw(st.sampled_from(paths))
    if op == "delete" and not isinstance(path[-1], str):
        op = 0
    mutated = _structure_mutated(tree, path, op)
    try:
        if in_header:
            layout = codec.layout_from_header(mutated, "f.xz: ")
            mutated = encoded
        codec.decode_chunk(mutated, layout, n, "f.xz: chunk 0: ")
    except FormatError as exc:
        assert str(exc).startswith("f.xz: ")


def test_a_decoder_bug_is_not_reported_as_a_corrupt_file(encoded_chunks, monkeypatch):
    """A TypeError raised inside the decoders (a bodybatch bug) propagates as is; only a
    map of the wrong shape is a FormatError, naming the entry."""
    from bodybatch.codec import group1
    from bodybatch.errors import FormatError

    codec, layout, _, encoded, n = encoded_chunks["v1"]
    broken = _structure_mutated(encoded, ("points", "vertices", "streams", 2), 9)
    with pytest.raises(FormatError, match=r"^f\.xz: chunk 0: malformed points\.vertices\.streams\[2\]: is a string"):
        codec.decode_chunk(broken, layout, n, "f.xz: chunk 0: ")

    def bug(*args, **kwargs):
        raise TypeError("a bug in the decoder")

    monkeypatch.setattr(group1, "decode_group", bug)
    with pytest.raises(TypeError, match="a bug in the decoder"):
        codec.decode_chunk(encoded, layout, n, "f.xz: chunk 0: ")
