"""One job: read one video's predictions once, split them into person tracks and
encode every track into its own file. Runs in worker processes; returns plain dicts
(the driver writes the manifest), never raises for a bad video.
"""

import os
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bodybatch._files import file_sha256
from bodybatch._trackdata import DETECTION_FIELDS
from bodybatch._version import __version__
from bodybatch.errors import BodybatchError, OutputError
from bodybatch.manifest import to_jsonable

__all__ = ["run_job", "make_job_spec", "TRACK_PREFIX"]

TRACK_PREFIX = "track_"


def make_job_spec(job, config):
    """A small picklable dict with everything a worker needs."""
    return {
        "video": job.video,
        "input_path": str(job.input_path),
        "input_sha256": job.input_sha256,
        "output_root": str(config.output_root),
        "output_dir": job.output_dir,
        "codec_options": config.codec_options(),
        "tracks": config.tracks_options(),
        "allow_pickle": config["input.allow_pickle"],
        "config_hash": config.config_hash(),
    }


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _input_info(spec, sha256=None):
    path = Path(spec["input_path"])
    stat = path.stat()
    return {
        "path": spec["video"],
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sha256 or spec.get("input_sha256") or file_sha256(path),
    }


def _safe_target(out_root, rel):
    """Absolute path of ``rel`` inside ``out_root``; refuses anything that escapes it."""
    root = os.path.realpath(out_root)
    target = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, target]) != root or target == root:
        raise OutputError(f"{rel}: output path leaves the output root {root}")
    return Path(target)


def run_job(spec):
    """Convert one video. Returns ``{"video", "rows", "person_frames", "input_bytes",
    "seconds"}``; a failure gives one row with ``status: failed`` and the error."""
    start = time.perf_counter()
    try:
        rows, person_frames = _convert(spec)
    except BodybatchError as exc:
        rows, person_frames = [_failed_row(spec, str(exc))], 0
    except MemoryError:
        rows, person_frames = [_failed_row(spec, "out of memory")], 0
    except Exception as exc:  # a bug or an unexpected library error: keep the run going
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        rows, person_frames = [_failed_row(spec, f"internal error {type(exc).__name__} at {where}: {exc}")], 0
    try:
        in_bytes = os.path.getsize(spec["input_path"])
    except OSError:
        in_bytes = 0
    return {
        "video": spec["video"],
        "rows": rows,
        "person_frames": person_frames,
        "input_bytes": in_bytes,
        "seconds": time.perf_counter() - start,
    }


def _failed_row(spec, error):
    try:
        info = _input_info(spec)
    except OSError as exc:
        info = {"path": spec["video"], "error": exc.strerror}
    msg = error if error.startswith(spec["input_path"]) else f"{spec['video']}: {error}"
    return {
        "video": spec["video"],
        "status": "failed",
        "error": msg,
        "input": info,
        "config_hash": spec["config_hash"],
        "bodybatch_version": __version__,
        "created": _now(),
        "path": None,
        "track": None,
    }


def _convert(spec):
    from bodybatch.predictions import read_predictions
    from bodybatch.tracks import make_splitter
    from bodybatch.trackfile import TrackWriter

    out_root = Path(spec["output_root"])
    out_dir = _safe_target(out_root, spec["output_dir"])
    input_info = _input_info(spec)
    structures = {} if spec["codec_options"].get("codec", "bodybatch") == "bodybatch" else None
    # The bodybatch codec takes the stored grid integers as they are when its grid is
    # the file's (the default 0.5 mm): no divide and round again (same output bytes).
    keep_grid = ("vertices", "vertex_uncertainties") if structures is not None else ()
    reader = read_predictions(spec["input_path"], allow_pickle=spec["allow_pickle"], keep_grid=keep_grid)
    metadata = to_jsonable(reader.metadata) if isinstance(reader.metadata, dict) else {}
    tracks = dict(spec["tracks"])
    min_length = tracks.pop("min_length")
    splitter = make_splitter(tracks.pop("mode"), min_length=min_length, **tracks)
    writers, done, dropped = {}, {}, []
    out_dir.mkdir(parents=True, exist_ok=True)

    def close(key):
        writer = writers.pop(key)
        if len(writer) >= min_length:
            done[key] = writer.close()
        else:
            writer.abort()
            dropped.append(len(writer))

    try:
        for t, frame in enumerate(reader):
            update = splitter.update(t, frame)
            for key, j in update.assignments:
                writer = writers.get(key)
                if writer is None:
                    target = _safe_target(out_root, f"{spec['output_dir']}/{TRACK_PREFIX}{key:04d}.xz")
                    meta = {"video": spec["video"], "track": int(key), "source": metadata}
                    options = dict(spec["codec_options"])
                    if structures is not None:
                        options["structures"] = structures
                    writer = writers[key] = TrackWriter(target, meta, **options)
                row = {k: frame[k][j] for k in DETECTION_FIELDS if k in frame}
                if frame.get("camera") is not None:
                    row["camera"] = frame["camera"]
                writer.append(row, frame_index=t)
            for key in update.ended:
                close(key)
        for key in splitter.finish():
            if key in writers:
                close(key)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    _remove_stale(out_dir, {Path(info.path).name for info in done.values()})
    tracking = {"mode": spec["tracks"]["mode"], "kept": len(done), "dropped_short": len(dropped)}
    rows = [_ok_row(spec, out_root, key, done[key], input_info, metadata, tracking) for key in sorted(done)]
    if not rows:
        rows = [dict(_failed_row(spec, ""), status="no_tracks", error=None, tracking=tracking, input=input_info)]
    return rows, sum(info.n_frames for info in done.values())


def _remove_stale(out_dir, keep):
    """Delete track files of an earlier run of this video that this run did not write."""
    for path in out_dir.glob(f"{TRACK_PREFIX}*.xz"):
        if path.name not in keep:
            path.unlink()


def _ok_row(spec, out_root, key, info, input_info, metadata, tracking):
    path = Path(info.path)
    return {
        "path": path.relative_to(os.path.realpath(out_root)).as_posix(),
        "status": "ok",
        "sha256": info.sha256 or file_sha256(path),
        "bytes": info.bytes,
        "raw_bytes": info.raw_bytes,
        "ratio": round(info.ratio, 4),
        "video": spec["video"],
        "track": int(key),
        "n_frames": info.n_frames,
        "first_frame": info.first_frame,
        "last_frame": info.last_frame,
        "input": input_info,
        "codec": info.codec,
        "config_hash": spec["config_hash"],
        "bodybatch_version": __version__,
        "created": _now(),
        "encode_seconds": info.encode_seconds,
        "max_abs_error_mm": info.max_abs_error_mm,
        "metadata": metadata,
        "tracking": tracking,
    }
