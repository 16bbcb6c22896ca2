"""The ``bodybatch sweep --plot`` figure: size against RMS error (matplotlib, the
optional ``plot`` extra)."""

from bodybatch.errors import DependencyError

__all__ = ["require_matplotlib", "plot_sweep"]

#: Field groups: label, fields, colour, marker, line style, width (the uncertainties'
#: curve is drawn thinner on top, so it stays visible where the two coincide).
_GROUPS = (
    ("coordinates (vertices, joints)", ("vertices", "joints"), "#1f77b4", "o", "-", 3.0),
    ("uncertainties (vertex, joint)", ("vertex_uncertainties", "joint_uncertainties"), "#d62728", "^", "--", 1.5),
)


def group_rms(point, fields):
    """RMS error (mm) over all values of ``fields`` (weighted by their counts)."""
    n = sum(point.errors_mm[f]["n"] for f in fields)
    return (sum(point.errors_mm[f]["rms"] ** 2 * point.errors_mm[f]["n"] for f in fields) / n) ** 0.5 if n else 0.0


def require_matplotlib():
    """Raise DependencyError (one line saying how to install it) without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DependencyError("--plot needs matplotlib: pip install 'bodybatch[plot]' (or pip install matplotlib)") from None


def plot_sweep(result, path):
    """Write a PNG of bits per vertex per frame (left axis; total bytes on the right)
    against RMS error in mm, one curve per field group (coordinates, uncertainties),
    steps labelled, and the
    bodycompress reference as stars.

    Parameters
    ----------
    result : bodybatch.sweep.SweepResult
    path : path-like
        Output PNG.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [p for p in result.points if not p.reference]
    refs = [p for p in result.points if p.reference]
    per_bpvf = 8 / (result.person_frames * result.n_vertices) if result.n_vertices else None
    y = (lambda p: p.bits_per_vertex_frame) if per_bpvf else (lambda p: p.bytes / 1024)
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=120)
    groups = [(g[0], [f for f in g[1] if f in result.fields], *g[2:]) for g in _GROUPS]
    groups = [g for g in groups if g[1]]
    for label, fields, colour, marker, style, width in groups:
        xs, ys = [group_rms(p, fields) for p in sweep], [y(p) for p in sweep]
        ax.plot(xs, ys, linestyle=style, marker=marker, color=colour, markersize=4 + 2 * width, linewidth=width,
                label=label)  # fmt: skip
        for p in refs:  # the first group's star larger: both show where they coincide
            ax.plot(group_rms(p, fields), y(p), marker="*", color=colour, markersize=10 + 3 * width,
                    markeredgecolor="black", linestyle="none")  # fmt: skip
    first = groups[0][1]
    for p in sweep:  # the steps, once, beside the first group's points
        step = f"{p.step_mm:g} mm" + (f" (unc. {p.uncertainty_step_mm:g})" if p.uncertainty_step_mm != p.step_mm else "")
        ax.annotate(step, (group_rms(p, first), y(p)), textcoords="offset points", xytext=(8, 6), fontsize=9)
    if refs:
        ax.plot([], [], marker="*", color="grey", markeredgecolor="black", markersize=13, linestyle="none",
                label="bodycompress 0.5 mm, xz (reference)")  # fmt: skip
    if result.input_grid_mm:
        ax.text(0.99, 0.02, f"inputs lie on a {result.input_grid_mm:g} mm grid: errors are measured against them",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="dimgrey")  # fmt: skip
    ax.set_xlabel("RMS error (mm; uncertainties converted to mm)")
    ax.set_ylabel("bits per vertex per frame (whole file)" if per_bpvf else "size (KiB)")
    if per_bpvf:  # bytes on the right: the same scale
        unit, div = ("MiB", 1 << 20) if max(p.bytes for p in sweep + refs) >= 10 << 20 else ("KiB", 1 << 10)
        scale = 1 / (per_bpvf * div)
        right = ax.secondary_yaxis("right", functions=(lambda b: b * scale, lambda k: k / scale))
        right.set_ylabel(f"total size ({unit})")
    points = sweep + refs
    x_max = max([group_rms(p, g[1]) for p in points for g in groups] + [0.01])
    y_max = max(y(p) for p in points)
    ax.set_xlim(-0.03 * x_max, 1.2 * x_max)  # room for the step labels
    ax.set_ylim(0, 1.15 * y_max)
    ax.grid(True, alpha=0.3)
    codec = sweep[0].codec["id"] if sweep else "?"
    ax.set_title(f"{codec} codec: size against error per quantization step\n"
                 f"{result.n_tracks} track(s), {result.person_frames} person-frames, "
                 f"{result.n_vertices} vertices per mesh", fontsize=11)  # fmt: skip
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
