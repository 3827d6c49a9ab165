"""The trainer's numerics: a sparse design matrix on numpy and an L2 logistic regression fitted by Adam.

Dev time only (numpy, imported inside the functions); inference reads the weights in pure Python.
"""

from __future__ import annotations


class Design:
    """Rows of hashed features as flat numpy arrays (a CSR matrix without scipy), L2-normalised."""

    def __init__(self, rows: list[list[int]]):
        import numpy as np

        self.n = len(rows)
        self.lengths = np.array([len(r) for r in rows], dtype=np.int64)
        self.indices = np.array([i for r in rows for i in r], dtype=np.int64)
        self.values = np.repeat(1.0 / np.sqrt(np.maximum(self.lengths, 1)), self.lengths)
        self.row_of = np.repeat(np.arange(self.n), self.lengths)

    def take(self, keep) -> "Design":
        """The rows at positions ``keep``."""
        import numpy as np

        sub = Design([])
        mask = np.isin(self.row_of, keep)
        remap = np.full(self.n, -1)
        remap[keep] = np.arange(len(keep))
        sub.n, sub.lengths = len(keep), self.lengths[keep]
        sub.indices, sub.values, sub.row_of = self.indices[mask], self.values[mask], remap[self.row_of[mask]]
        order = np.argsort(sub.row_of, kind="stable")
        sub.indices, sub.values, sub.row_of = sub.indices[order], sub.values[order], sub.row_of[order]
        return sub

    def dot(self, w):
        import numpy as np

        return np.bincount(self.row_of, weights=w[self.indices] * self.values, minlength=self.n)

    def tdot(self, g, size: int):
        import numpy as np

        return np.bincount(self.indices, weights=g[self.row_of] * self.values, minlength=size)


def fit_head(x: Design, y, weight, size: int, l2: float, steps: int):
    """Weights and bias of one L2 logistic regression, by full-batch Adam on the weighted log loss."""
    import numpy as np

    w, b = np.zeros(size), 0.0
    m, v, mb, vb = np.zeros(size), np.zeros(size), 0.0, 0.0
    total = weight.sum()
    for t in range(1, steps + 1):
        p = 1.0 / (1.0 + np.exp(-(x.dot(w) + b)))
        g = weight * (p - y) / total
        gw, gb = x.tdot(g, size) + l2 * w, g.sum()
        m, v = 0.9 * m + 0.1 * gw, 0.999 * v + 0.001 * gw * gw
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        lr = 0.05 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w -= lr * m / (np.sqrt(v) + 1e-8)
        b -= lr * mb / (np.sqrt(vb) + 1e-8)
    return w, b
