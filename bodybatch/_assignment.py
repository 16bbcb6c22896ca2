"""Optimal assignment (the linear sum assignment problem) for small cost matrices.

Shortest augmenting paths with row and column potentials (the Hungarian method in
its O(n^2 m) form), in plain Python. Tracking needs tracks x detections matrices of
a few dozen at most, for which this takes microseconds; it replaced
``scipy.optimize.linear_sum_assignment``, whose import alone cost each worker
0.1-0.4 s.
"""

import numpy as np

__all__ = ["min_cost_assignment"]


def min_cost_assignment(cost):
    """Rows and columns of a minimum-cost complete matching.

    Parameters
    ----------
    cost : array_like of float, shape (n, m), finite

    Returns
    -------
    rows, cols : ndarray of int64, shape (min(n, m),)
        ``cost[rows, cols].sum()`` is minimal among all matchings that pair every row
        (if n <= m) or every column (if n > m); ``rows`` is increasing.
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost must be finite")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    col_of_row = _assign_rows(cost) if n else np.zeros(0, np.int64)
    rows = np.arange(n, dtype=np.int64)
    if not transposed:
        return rows, col_of_row
    order = np.argsort(col_of_row)
    return col_of_row[order], rows[order]


def _assign_rows(cost):
    """For n <= m: the column of each row in a minimum-cost matching (plain Python
    on lists: for the small matrices of tracking, numpy's per-call overhead would
    cost more than the arithmetic)."""
    n, m = cost.shape
    rows = cost.tolist()
    inf = float("inf")
    # Column 0 is virtual: the start of every augmenting path. Rows are 1-based in
    # ``row_of`` (0: column free).
    row_pot = [0.0] * (n + 1)
    col_pot = [0.0] * (m + 1)
    row_of = [0] * (m + 1)
    for i in range(1, n + 1):
        row_of[0] = i
        prev = [0] * (m + 1)  # previous column on the shortest path
        slack = [inf] * (m + 1)
        used = [False] * (m + 1)
        j0 = 0
        while row_of[j0]:
            used[j0] = True
            i0 = row_of[j0]
            costs, u0 = rows[i0 - 1], row_pot[i0]
            delta, j1 = inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                reduced = costs[j - 1] - u0 - col_pot[j]
                if reduced < slack[j]:
                    slack[j], prev[j] = reduced, j0
                if slack[j] < delta:
                    delta, j1 = slack[j], j
            for j in range(m + 1):
                if used[j]:
                    row_pot[row_of[j]] += delta
                    col_pot[j] -= delta
                else:
                    slack[j] -= delta
            j0 = j1
        while j0:  # flip the augmenting path
            j1 = prev[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    col_of_row = np.empty(n, np.int64)
    for j in range(1, m + 1):
        if row_of[j]:
            col_of_row[row_of[j] - 1] = j - 1
    return col_of_row
