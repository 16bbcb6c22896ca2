"""Plain JSON values from what bodybatch reads (numpy arrays and scalars, bytes,
paths), for the manifest and the command line."""

import math
from pathlib import Path

__all__ = ["to_jsonable"]


def to_jsonable(obj):
    """Nested dicts/lists of numpy arrays, scalars, bytes and paths -> plain JSON values
    (non-finite floats become strings, so the output stays strict JSON)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
