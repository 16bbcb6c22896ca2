"""Audit a dataset from its manifest alone: every row's file must exist, have the
recorded size and sha256, decode completely and hold the recorded frames."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from bodybatch._files import file_sha256, human_bytes
from bodybatch.errors import BodybatchError
from bodybatch.manifest import iter_manifest, journal_files

__all__ = ["audit_manifest", "AuditReport"]


@dataclass
class AuditReport:
    rows: int = 0
    checked: int = 0
    ok: int = 0
    bytes: int = 0
    problems: list = field(default_factory=list)  # (path or video, reason)
    warnings: list = field(default_factory=list)

    @property
    def exit_code(self):
        return 1 if self.problems else 0

    def text(self):
        lines = [f"{where}: {why}" for where, why in self.problems]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(
            f"audited {self.checked} track file(s) of {self.rows} manifest row(s): "
            f"{self.ok} ok, {len(self.problems)} problem(s), {human_bytes(self.bytes)}"
        )
        return "\n".join(lines)


def _decode_all(path):
    """Decode every row (chunk by chunk, memory bounded); return (rows, first, last)."""
    from bodybatch.formats import open_track

    with open_track(path) as reader:
        n = 0
        for _ in reader:
            n += 1
        fi = reader.frame_index
        first, last = (int(fi[0]), int(fi[-1])) if len(fi) else (-1, -1)
        return n, len(reader), first, last


def audit_manifest(manifest, root=None, quick=False):
    """Check every row of ``manifest``.

    Parameters
    ----------
    manifest : path-like
    root : path-like, optional
        Output root the rows' paths are relative to (default: the manifest's folder).
    quick : bool
        Only existence and size.
    """
    manifest = Path(manifest)
    root = Path(root) if root is not None else manifest.parent
    report = AuditReport()
    if not manifest.exists() and not journal_files(manifest):
        report.problems.append((str(manifest), "manifest not found"))
        return report
    seen = set()
    try:
        for row in iter_manifest(manifest, warn=report.warnings.append):
            report.rows += 1
            _audit_row(row, root, quick, seen, report)
    except BodybatchError as exc:
        report.problems.append((str(manifest), str(exc)))
        return report
    for rel in _track_files(root):
        if rel not in seen:
            report.warnings.append(f"{rel}: track file not in the manifest")
    return report


def _track_files(root):
    """Relative '/'-paths of the visible ``*.xz`` files below ``root``, folder by folder
    in sorted order (streamed: hidden folders, e.g. staging, are skipped)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for name in sorted(files):
            if name.endswith(".xz") and not name.startswith("."):
                yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")


def _audit_row(row, root, quick, seen, report):
    if row.status == "failed":
        report.problems.append((row.video, f"conversion failed: {row.error}"))
        return
    if row.status != "ok":
        return
    rel = row.path
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        report.problems.append((row.video, f"invalid path in manifest: {rel!r}"))
        return
    if rel in seen:
        report.problems.append((rel, "listed twice in the manifest"))
        return
    seen.add(rel)
    report.checked += 1
    problem = _check_row(root / rel, row, quick)
    if problem:
        report.problems.append((rel, problem))
    else:
        report.ok += 1
        report.bytes += row.bytes


def _check_row(path, row, quick):
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "file missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if size != row.bytes:
        return f"size {size} differs from manifest ({row.bytes})"
    if quick:
        return None
    if file_sha256(path) != row.get("sha256"):
        return "sha256 differs from manifest (file changed or corrupt)"
    try:
        decoded, length, first, last = _decode_all(path)
    except BodybatchError as exc:
        return f"does not decode: {exc}"
    if decoded != length or length != row.n_frames:
        return f"holds {decoded} frames, manifest says {row.n_frames}"
    if (first, last) != (row.get("first_frame"), row.get("last_frame")):
        return f"frame range {first}..{last} differs from manifest ({row.get('first_frame')}..{row.get('last_frame')})"
    return None
