"""Audit a dataset from its manifest alone: every row's file must exist, have the
recorded size and sha256, decode completely and hold the recorded frames."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from bodybatch._files import file_sha256, human_bytes
from bodybatch.errors import BodybatchError
from bodybatch.manifest import read_manifest

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
    try:
        rows = read_manifest(manifest)
    except BodybatchError as exc:
        report.problems.append((str(manifest), str(exc)))
        return report
    if not manifest.exists():
        report.problems.append((str(manifest), "manifest not found"))
        return report
    report.rows = len(rows)
    seen = set()
    for row in rows:
        if row.status == "failed":
            report.problems.append((row.video, f"conversion failed: {row.error}"))
            continue
        if row.status != "ok":
            continue
        rel = row.path
        if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
            report.problems.append((row.video, f"invalid path in manifest: {rel!r}"))
            continue
        if rel in seen:
            report.problems.append((rel, "listed twice in the manifest"))
            continue
        seen.add(rel)
        report.checked += 1
        problem = _check_row(root / rel, row, quick)
        if problem:
            report.problems.append((rel, problem))
        else:
            report.ok += 1
            report.bytes += row.bytes
    tracked = {Path(p).as_posix() for p in seen}
    for path in sorted(root.rglob("*.xz")):
        rel = path.relative_to(root).as_posix()
        if rel not in tracked and not path.name.startswith("."):
            report.warnings.append(f"{rel}: track file not in the manifest")
    return report


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
