"""Camera conversion between objects and the bodycompress camera dict.

The dict has ``rotvec_w2c (3,)`` (world-to-camera rotation vector, radians),
``loc (3,)`` (camera position in world coordinates, mm), ``intr (2, 3)`` (top rows of
the intrinsic matrix, pixels), optionally ``up (3,)`` and ``distcoef (k,)``.
Objects are ``deltacamera.Camera`` (formerly ``cameravision``) or anything with
``R``, ``t``, ``intrinsic_matrix`` and ``world_up`` attributes.
"""

import numpy as np

from bodybatch.errors import BodybatchError, TrackError

__all__ = ["camera_to_dict", "dict_to_camera", "rotvec_to_matrix", "matrix_to_rotvec"]

CAMERA_KEYS = ("rotvec_w2c", "loc", "intr", "up", "distcoef")


def rotvec_to_matrix(rotvec):
    """(3,) axis-angle vector (radians) -> (3, 3) rotation matrix (Rodrigues)."""
    r = np.asarray(rotvec, np.float64)
    theta = np.linalg.norm(r)
    if theta < 1e-12:
        k = np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
        return np.eye(3) + k
    a = r / theta
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def matrix_to_rotvec(matrix):
    """(3, 3) rotation matrix -> (3,) axis-angle vector (radians), robust near pi."""
    m = np.asarray(matrix, np.float64)
    cos = np.clip((np.trace(m) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    if theta < 1e-7:
        return 0.5 * np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
    if np.pi - theta < 1e-4:
        # Axis from the symmetric part: R + I = 2 a a^T near theta = pi.
        b = (m + np.eye(3)) / 2
        i = int(np.argmax(np.diag(b)))
        axis = b[:, i] / np.sqrt(max(b[i, i], 1e-300))
        return axis / np.linalg.norm(axis) * theta
    w = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
    return w / (2 * np.sin(theta)) * theta


def camera_to_dict(camera):
    """Normalize a camera object or dict into the bodycompress camera dict.

    Raises
    ------
    TrackError
        If a dict lacks ``rotvec_w2c``, ``loc`` or ``intr`` or the object is not a camera.
    """
    if isinstance(camera, dict):
        missing = [k for k in ("rotvec_w2c", "loc", "intr") if k not in camera]
        if missing:
            raise TrackError(
                f"camera dict is missing {missing}; expected keys rotvec_w2c, loc, intr "
                f"and optionally up, distcoef"
            )
        extra = sorted(set(camera) - set(CAMERA_KEYS))
        if extra:
            raise TrackError(f"camera dict has unknown keys {extra}; allowed: {list(CAMERA_KEYS)}")
        return {k: np.asarray(v) for k, v in camera.items()}
    if all(hasattr(camera, a) for a in ("R", "t", "intrinsic_matrix", "world_up")):
        out = {
            "rotvec_w2c": matrix_to_rotvec(camera.R).astype(np.float32),
            "loc": np.asarray(camera.t, np.float32),
            "intr": np.asarray(camera.intrinsic_matrix, np.float32)[:2],
            "up": np.asarray(camera.world_up, np.float32),
        }
        has_distortion = getattr(camera, "has_distortion", lambda: False)
        if has_distortion():
            out["distcoef"] = np.asarray(camera.get_distortion_coeffs(), np.float32)
        return out
    raise TrackError(
        f"unsupported camera of type {type(camera).__name__}: pass a camera dict "
        f"(rotvec_w2c, loc, intr[, up, distcoef]) or a deltacamera.Camera"
    )


def dict_to_camera(d):
    """Camera dict -> ``deltacamera.Camera`` (needs the ``camera`` extra)."""
    try:
        import deltacamera
    except ImportError:
        raise BodybatchError(
            "decode_camera=True needs deltacamera: pip install 'bodybatch[camera]'"
        ) from None
    return deltacamera.Camera(
        rot_world_to_cam=rotvec_to_matrix(d["rotvec_w2c"]).astype(np.float32),
        optical_center=np.asarray(d["loc"]),
        intrinsic_matrix=np.concatenate([np.asarray(d["intr"]), [[0, 0, 1]]]),
        distortion_coeffs=d.get("distcoef"),
        world_up=d.get("up", (0, 0, 1)),
    )
