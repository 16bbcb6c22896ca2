"""The ``bodybatch`` track codec: quantize, predict in space-time, entropy code.

Pure functions of arrays and bytes: no file I/O, and no threads unless a decode asks
for them (``decode_chunk(..., threads=n)``, :mod:`bodybatch.codec._threads`). The
container (:mod:`bodybatch.formats.bodybatch`) frames what this module produces.

A track is split into *point groups*: ``vertices`` (+ ``vertex_uncertainties``) and
``joints`` (+ ``joint_uncertainties``). Each group is quantized onto the grid,
stacked point-major as ``(N, T, D)`` integers (D = 3 coordinates, plus 1 for the
uncertainty), turned into residuals by :mod:`bodybatch.codec.predict` with a
:class:`VertexStructure` derived from the first frame, and coded per level and
component (:mod:`bodybatch.codec.streams`) by :mod:`bodybatch.codec.entropy`. Boxes
and cameras are stored losslessly.
"""

import weakref

import numpy as np

from bodybatch import _grid
from bodybatch._grid import float32_target
from bodybatch.codec import _entries, _kernels, bundled, entropy, group1, group2, group3
from bodybatch.codec._threads import Workers
from bodybatch.codec._base import UNCERTAINTY_OPTION, Codec, CodecOption, register_codec
from bodybatch.codec.streams import (  # noqa: F401  (N_CLASSES, activity_classes, _blocks...: also used by research scripts)
    MAX_POINTS, N_CLASSES, _blocks, _classes_and_dtype, _components, _decode_array, _decode_residual_streams,
    _encode_array, _encode_residual_streams, _rest_blocks, _sorted_layout, activity_classes, decode_residual_parts,
)  # fmt: skip
from bodybatch.codec.structure import build_structure, structure_from_arrays, structure_to_arrays
from bodybatch.errors import FormatError

__all__ = ["BodybatchCodec", "POINT_GROUPS", "V2_OPTIONS", "V2_0_OPTIONS"]

#: group name -> (coordinate field in mm, uncertainty field in m)
POINT_GROUPS = {
    "vertices": ("vertices", "vertex_uncertainties"),
    "joints": ("joints", "joint_uncertainties"),
}
#: Bound that keeps a hostile header from driving allocations.
MAX_CHUNK_ROWS = 1 << 13

#: The options codec v2 is tuned for (``get_codec("bodybatch", **V2_OPTIONS)``): the
#: fixed-point predictor (format 3.0), 4 interpolating parents, 8 temporal lags.
V2_OPTIONS = {"predictor": 3, "chunk_size": 128, "n_parents": 4, "window": 8, "level": 12}
#: The format 2.0 options of bodybatch 0.2 (``predictor=2``), kept for comparison.
V2_0_OPTIONS = {"predictor": 2, "chunk_size": 128, "n_parents": 3, "window": 4}

#: VertexStructure -> its coded (curve, steps) header streams, while it is in use.
_CODED_STRUCTURES = weakref.WeakKeyDictionary()


@register_codec
class BodybatchCodec(Codec):
    """Space-time predictive codec for person tracks (see :attr:`options`).

    Parameters
    ----------
    quantization_mm : float
        Grid step in millimetres for coordinates (and for uncertainties, expressed
        in metres, unless ``uncertainty_quantization_mm`` is set). Decoded values
        are exactly the grid values.
    uncertainty_quantization_mm : float or None
        Grid step in millimetres of ``vertex_uncertainties`` and
        ``joint_uncertainties`` (stored in metres); None: ``quantization_mm``.
    chunk_size : int
        Rows per independently decodable chunk (random access granularity).
    n_parents : int
        Parents per point in the spatial hierarchy (m).
    window : int
        Frames over which the offset to the parents is averaged (K).
    level : int
        pcodec compression level (0..12).
    predictor : int or None
        None (or 1): the v1 predictor, format 1.x. 2: the separable v2 predictor
        (:mod:`bodybatch.codec.predict2`; ``window`` is its number of temporal lags),
        written as format 2.0. 3: its fixed-point form (:mod:`bodybatch.codec.predict3`,
        ~7% smaller), format 3.0. Releases before a format reject it. Made for
        ``chunk_size=128, n_parents=4, window=8, level=12`` (:data:`V2_OPTIONS`).
    structure : {None, "bundled", "own"}
        Format 3.x only. None or ``"bundled"``: a point group whose topology has a
        structure bundled with bodybatch (:mod:`bodybatch.codec.bundled`) names it
        (format 3.1) when it fits the first row; ``"own"``: every track stores the
        structure built from its first row (format 3.0).
    """

    codec_id = "bodybatch"
    file_format = "bodybatch"
    options = (
        CodecOption("quantization_mm", float, 0.5, "grid step (mm) of vertices and joints", 1e-6, 1e3),
        UNCERTAINTY_OPTION,
        CodecOption("chunk_size", int, 64, "rows per random-access chunk", 1, MAX_CHUNK_ROWS),
        CodecOption("n_parents", int, 3, "spatial parents per vertex", 1, 16),
        CodecOption("window", int, 2, "frames the temporal predictor averages", 1, 8),
        CodecOption("level", int, 8, "entropy coder effort", 0, 12),
        CodecOption("predictor", int, None, "predictor: 1 (unset), 2 (format 2.0) or 3 (format 3.0, smallest)", 1, 3),
        CodecOption("structure", ("bundled", "own"), None,
                    "format 3.x: a bundled structure where one fits (unset) or always the track's own"),
    )
    grid_fields = ("vertices", "vertex_uncertainties")

    def __init__(self, quantization_mm=0.5, chunk_size=64, n_parents=3, window=2, level=8,
                 uncertainty_quantization_mm=None, predictor=None, structure=None):  # fmt: skip
        self._set_options(quantization_mm=quantization_mm, chunk_size=chunk_size, n_parents=n_parents,
                          window=window, level=level, uncertainty_quantization_mm=uncertainty_quantization_mm,
                          predictor=None if predictor == 1 else predictor,
                          structure=None if structure == "bundled" else structure)  # fmt: skip
        self.block_rows = self.chunk_size

    @property
    def format_major(self):
        """Major version of the track format this codec's chunks need (2, 3: v2 predictors)."""
        return self.predictor or 1

    def format_version(self, layout):
        """(major, minor) of a file with this layout: 3.1 when a group names a bundled
        structure, else (major, 0)."""
        bundled_names = any(g.get("bundled") for g in layout.values())
        return (self.format_major, 1 if bundled_names else 0)

    def factors(self):
        """Grid factors (grid steps per unit): coordinates per mm, uncertainties per m."""
        return 1.0 / self.quantization_mm, 1000.0 / self.uncertainty_step_mm

    # -- layout: what is derived once per track ------------------------------------------
    def make_layout(self, first, structures=None):
        """Build the per-track layout from the first chunk (dict of (T, ...) arrays).

        Parameters
        ----------
        first : dict
        structures : dict, optional
            Cache ``{(group, n_points, n_parents): VertexStructure}`` shared by the
            tracks of one video: people share the mesh topology, so the structure of
            the video's first track serves the others (within ~1% in size) and
            building it is the largest fixed cost of a short track.

        Returns
        -------
        dict
            Per point group: its point count, dims and structure.
        """
        layout = {}
        factor, _ = self.factors()
        for group, (coord, unc) in POINT_GROUPS.items():
            if coord not in first:
                continue
            n_points = first[coord].shape[1]
            key = (group, n_points, self.n_parents) + (("sorted",) if self.predictor == 3 else ())
            # a structure cached for the video (own, because the bundled one did not fit
            # its first track) is reused without trying the bundled one again
            structure = structures.get(key) if structures is not None else None
            name = None
            if structure is None:
                points = _grid.quantize(first[coord][0], factor, coord).astype(np.int64)
            if structure is None and self.predictor == 3 and self.structure is None:
                name = bundled.find_bundled(points * self.quantization_mm, self.n_parents)
                structure = bundled.bundled_structure(name, n_points, self.n_parents) if name else None
            if structure is None:
                if self.predictor == 3:
                    structure = group3.sorted_parents(build_structure(points, self.n_parents, step_cost=group3.STEP_COST))
                else:
                    structure = build_structure(points, self.n_parents)
                if structures is not None:
                    structures[key] = structure
            layout[group] = {"n_points": n_points, "n_dims": 3 + (unc in first), "structure": structure,
                             "bundled": name}  # fmt: skip
        return layout

    def layout_to_header(self, layout):
        """Layout -> msgpack-ready map (structure as compact coded integer arrays)."""
        out = {}
        for group, g in layout.items():
            if g.get("bundled"):
                out[group] = {"n_points": g["n_points"], "n_dims": g["n_dims"],
                              "n_parents": g["structure"].n_parents, "structure": g["bundled"]}  # fmt: skip
                continue
            coded = _CODED_STRUCTURES.get(g["structure"], {}).get(self.predictor)
            if coded is None:  # tracks of one video share a structure: code it once
                if self.predictor == 3:
                    coded = group3.encode_structure(g["structure"])
                else:
                    curve, steps = structure_to_arrays(g["structure"])
                    coded = entropy.encode_numbers(curve, delta=True), entropy.encode_numbers(steps)
                _CODED_STRUCTURES.setdefault(g["structure"], {})[self.predictor] = coded
            out[group] = {
                "n_points": g["n_points"],
                "n_dims": g["n_dims"],
                "n_parents": g["structure"].n_parents,
                "curve": coded[0],
                "steps": coded[1],
            }
        return out

    def layout_from_header(self, header, where=""):
        """Invert :meth:`layout_to_header`; raise FormatError on anything implausible."""
        layout = {}
        groups = _entries.check(header, _entries.map_of(_entries.LAYOUT_GROUP[self.format_major]), where, "layout")
        for group, g in groups.items():
            if group not in POINT_GROUPS:
                raise FormatError(f"{where}unknown point group {group!r}")
            n, d, m = g["n_points"], g["n_dims"], g["n_parents"]
            if not (1 <= n <= MAX_POINTS and d in (3, 4) and 1 <= m <= 16):
                raise FormatError(f"{where}implausible {group} layout n={n} d={d} m={m}")
            name = g.get("structure") if self.predictor == 3 else None
            if name is None and not {"curve", "steps"} <= g.keys():
                raise FormatError(f"{where}malformed layout.{group}: neither a structure name nor curve and steps")
            if name is not None:
                structure = bundled.bundled_structure(name, n, m, f"{where}{group}: ")
            elif self.predictor == 3:
                structure = group3.decode_structure(g["curve"], g["steps"], n, m, f"{where}{group} ")
            else:
                curve = entropy.decode_numbers(g["curve"], np.int32, n, f"{where}{group} order")
                steps = entropy.decode_numbers(g["steps"], np.int32, n * m, f"{where}{group} parents")
                try:
                    structure = structure_from_arrays(curve, steps, m)
                except ValueError as exc:
                    raise FormatError(f"{where}{group}: {exc}") from None
            layout[group] = {"n_points": n, "n_dims": d, "structure": structure, "bundled": name}
        return layout

    # -- the track's frame index ------------------------------------------------------------
    def encode_frame_index(self, frame_index):
        """(n,) increasing int64 video frames -> bytes (delta coded)."""
        return entropy.encode_numbers(frame_index, delta=True)

    def decode_frame_index(self, data, n_frames, where=""):
        """Invert :meth:`encode_frame_index` for ``n_frames`` rows (FormatError if corrupt)."""
        return entropy.decode_numbers(data, np.int64, n_frames, f"{where}frame index")

    # -- chunks -------------------------------------------------------------------------
    def encode_chunk(self, chunk, layout):
        """Encode one chunk.

        Parameters
        ----------
        chunk : dict
            ``vertices (T,V,3)`` mm, ``vertex_uncertainties (T,V)`` m, ``joints (T,J,3)``,
            ``joint_uncertainties (T,J)``, ``boxes (T,B)``, ``camera`` (dict of (T,...)
            arrays); validated by the caller.
        layout : dict from :meth:`make_layout`

        Returns
        -------
        encoded : dict
            msgpack-ready map of bytes streams and small ints.
        max_error_mm : float
            Largest |decoded - input| over all quantized values, in mm.
        """
        factor, unc_factor = self.factors()
        out = {"points": {}, "arrays": {}}
        max_error = 0.0
        for group, g in layout.items():
            coord, unc = POINT_GROUPS[group]
            values = chunk[coord]
            x = np.empty(values.shape[:2] + (g["n_dims"],), np.int32)  # (T, N, D), |x| <= 2**30
            max_abs, err = _grid.quantize_into(values, factor, coord, x[:, :, :3])
            max_error = max(max_error, err)
            if g["n_dims"] == 4:
                unc_abs, err = _grid.quantize_into(chunk[unc], unc_factor, unc, x[:, :, 3])
                max_abs, max_error = max(max_abs, unc_abs), max(max_error, 1000.0 * err)
            if self.predictor == 2:
                out["points"][group] = group2.encode_group(x, g["structure"], self.window, self.level, max_abs)
                continue
            if self.predictor == 3:
                out["points"][group] = group3.encode_group(x, g["structure"], self.window, self.level, max_abs)
                continue
            out["points"][group] = group1.encode_group(x, g["structure"], self.window, self.level, max_abs)
        for name in ("boxes",):
            if name in chunk:
                out["arrays"][name] = _encode_array(chunk[name], self.level)
        if "camera" in chunk:
            out["camera"] = {k: _encode_array(v, self.level) for k, v in chunk["camera"].items()}
        return out, max_error

    def decode_chunk(self, encoded, layout, n_frames, where="", fields=None, rows=None, threads=1, into=None):
        """Invert :meth:`encode_chunk` for a chunk of ``n_frames`` rows: a dict of
        ``(T, ...)`` arrays (camera: dict of arrays). ``where`` prefixes error messages.

        ``rows`` (None: all): a ``slice(start, stop)`` of the rows to return; the
        compiled decoders run their recurrences up to ``stop`` only (reading row ``k``
        costs ``k + 1`` rows of prediction).

        ``fields`` (collection of names, None: all): decode only these; a point group
        whose coordinates and uncertainties are both left out is skipped, its streams
        untouched (``{"joints"}`` never decodes the vertex streams).

        ``threads``: threads of this decode (the caller's included) for the compiled
        paths of formats 1.x and 3.x (:mod:`bodybatch.codec._threads`); the values are
        the same.

        ``into`` (dict of field -> array, optional): where the compiled paths write a
        point field's float32 values when the array has the rows' shape (e.g. a slice of
        a whole track's output: no copy afterwards); the result then holds that array.
        """
        workers = Workers(threads if self.format_major != 2 else 1)
        return self._decode_chunk(encoded, layout, n_frames, where, fields, rows, workers, into or {})

    def _decode_chunk(self, encoded, layout, n_frames, where, fields, rows, workers, into):
        factor, unc_factor = self.factors()
        scales = _grid.dequantize_scale(factor) + _grid.dequantize_scale(unc_factor)  # the compiled dequantizers'
        compiled = _kernels.kernels()
        out = {}
        points = _entries.check(encoded, _entries.CHUNK, where)["points"]
        for group, g in layout.items():
            coord, unc = POINT_GROUPS[group]
            if fields is not None and coord not in fields and unc not in fields:
                continue  # --- fields= : skip the group's streams entirely
            if group not in points:
                raise FormatError(f"{where}malformed chunk: no entry for the point group {group!r}")
            entry = _entries.check(points[group], _entries.GROUP_ENTRY[self.format_major], where, f"points.{group}")
            max_abs = entry["max_abs"]
            if not 0 <= max_abs <= _grid.MAX_ABS_VALUE:
                raise FormatError(f"{where}{group}: implausible value bound {max_abs}")
            d = g["n_dims"]
            if self.predictor == 3 and compiled is not None and max_abs <= _grid.MAX_EXACT_FLOAT32:
                values = group3.decode_group_values(entry, g["structure"], d, n_frames, self.window,
                                                    f"{where}{group}: ", rows, max_abs, scales, compiled,
                                                    workers, (into.get(coord), into.get(unc)))  # fmt: skip
                if values is not None:  # checked against max_abs already
                    out[coord] = values[0]
                    if d == 4:
                        out[unc] = values[1]
                    continue
            if self.predictor == 2:
                x = group2.decode_group(entry, g["structure"], d, n_frames, self.window, max_abs,
                                        f"{where}{group}: ", rows)  # fmt: skip
            elif self.predictor == 3:
                x = group3.decode_group(entry, g["structure"], d, n_frames, self.window, f"{where}{group}: ", rows)
            else:
                x = group1.decode_group(entry, g["structure"], d, n_frames, self.window, max_abs,
                                        f"{where}{group}: ", rows, workers)  # fmt: skip
            inverse = None
            if isinstance(x, tuple):  # the v1 kernel: rows in stored point order, their bound
                x, inverse, top = x
            if compiled is not None and max_abs <= _grid.MAX_EXACT_FLOAT32:  # one pass, float32 out
                shape = (x.shape[0], len(inverse) if inverse is not None else x.shape[1])
                xyz, unc_values = float32_target(into.get(coord), shape + (3,)), float32_target(into.get(unc), shape)
                if inverse is not None:
                    workers.run([lambda a=a, b=b: compiled.gather_dequantize(d, x[a:b], inverse, *scales, xyz[a:b],
                                                                             unc_values[a:b])
                                 for a, b in workers.ranges(x.shape[0])])  # rows  # fmt: skip
                else:
                    top = compiled.dequantize(d, x, *scales, xyz, unc_values)
                out[coord] = xyz
                if d == 4:
                    out[unc] = unc_values
            else:
                if inverse is not None:
                    x = x[:, inverse]
                else:
                    top = max(int(x.max()), -int(x.min())) if x.size else 0
                out[coord] = _grid.dequantize(x[:, :, :3], factor, max_abs)  # x: (T, N, D)
                if d == 4:
                    out[unc] = _grid.dequantize(x[:, :, 3], unc_factor, max_abs)
            if top > max_abs:
                raise FormatError(f"{where}{group}: decoded values exceed their bound")
        for name, entry in encoded.get("arrays", {}).items():
            if fields is None or name in fields:
                out[name] = _decode_array(entry, n_frames, f"{where}{name}")[rows or slice(None)]
        if "camera" in encoded and (fields is None or "camera" in fields):
            out["camera"] = {
                k: _decode_array(v, n_frames, f"{where}camera.{k}")[rows or slice(None)]
                for k, v in encoded["camera"].items()
            }
        if fields is not None:  # a group's other field came along with the one asked for
            out = {k: v for k, v in out.items() if k in fields}
        return out
