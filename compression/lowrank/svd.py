"""Truncated SVD: the best rank-r approximation of a weight matrix, and how to choose r.

Any real matrix ``W`` of shape ``(m, n)`` (a ``Linear`` weight is
``(out_features, in_features)``) has a singular value decomposition::

    W = U diag(s) V^T        U (m, k), s (k,), V^T (k, n),   k = min(m, n)

with orthonormal columns in ``U`` and rows in ``V^T`` and the singular values
``s[0] >= s[1] >= ... >= s[k-1] >= 0``. Keeping only the first ``r`` terms::

    W_r = U[:, :r] diag(s[:r]) V^T[:r, :]                       (m, n), rank r

**Eckart-Young theorem** (1936): ``W_r`` is the best rank-``r`` approximation
of ``W`` in the Frobenius norm (and in the spectral norm): no matrix of rank
at most ``r`` is closer to ``W``, and the error is exactly what was dropped::

    ||W - W_r||_F = sqrt(s[r]^2 + s[r+1]^2 + ... + s[k-1]^2)

**Why it compresses.** ``W_r`` is stored as two thin factors ``A`` (m, r)
and ``B`` (r, n) with ``A @ B = W_r``: ``r * (m + n)`` numbers instead of
``m * n``. That saves something only when ``r * (m + n) < m * n``, i.e. for
``r`` below ``m * n / (m + n)`` (:func:`max_useful_rank`); a 300 x 784 layer
must drop below rank 217 before the two factors are smaller than the matrix.
Full rank never saves: ``min(m, n) * (m + n) > m * n``.

**Splitting the singular values.** We put ``sqrt(s)`` on each side::

    A = U_r diag(sqrt(s_r))       (m, r)
    B = diag(sqrt(s_r)) V_r^T     (r, n)        A @ B = U_r diag(s_r) V_r^T = W_r

so both factors have the same column/row norms (``||A[:, i]|| = ||B[i, :]|| =
sqrt(s[i])``). With ``s`` all on one side one factor would be orthonormal and
the other carry every scale; the balanced split is the one weight decay
prefers (among all ``A, B`` with ``A @ B = W_r`` it has the smallest
``||A||_F^2 + ||B||_F^2``, namely ``2 * sum(s_r)``), so fine-tuning with the
course's recipe (weight decay 5e-4) does not start by moving scale from one
factor to the other, and both factors get gradients of comparable size.

**Convolutions** are reshaped first: a ``Conv2d`` weight ``(C_out, C_in, kh,
kw)`` is the matrix ``(C_out, C_in * kh * kw)`` (:func:`weight_matrix`),
one row per filter (Denton et al. 2014; Jaderberg et al. 2014 factor the
spatial dimensions further).

**Choosing r by energy.** The fraction of the squared Frobenius norm that
the first ``r`` terms keep is ``sum(s[:r]^2) / sum(s^2)``
(:func:`energy_kept`); :func:`rank_for_energy` returns the smallest ``r``
that keeps at least a given fraction.

Everything here is computed in float64, whatever dtype ``W`` has (``W``'s
dtype is used for the factors returned to a layer). PyTorch:
``torch.linalg.svd(W, full_matrices=False)`` returns the same ``U, s, V^T``
(each pair ``U[:, i], V^T[i, :]`` up to a common sign) and
``torch.linalg.svdvals`` the singular values.

References: C. Eckart and G. Young 1936, "The approximation of one matrix by
another of lower rank"; J. Xue, J. Li and Y. Gong 2013, "Restructuring of
deep neural network acoustic models with singular value decomposition"
(Interspeech: SVD of speech DNN layers, then fine-tuning); E. Denton et al.
2014, "Exploiting linear structure within convolutional networks for
efficient evaluation" (NeurIPS); M. Jaderberg, A. Vedaldi and A. Zisserman
2014, "Speeding up convolutional neural networks with low rank expansions"
(BMVC).

>>> import numpy as np
>>> W = np.array([[3.0, 0.0], [0.0, 1.0]])
>>> A, B = low_rank_factors(W, 1)
>>> A @ B
array([[3., 0.],
       [0., 0.]])
>>> float(truncation_error(singular_values(W), 1))
1.0
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_energy",
    "check_rank",
    "energy_kept",
    "factorized_parameters",
    "low_rank_approximation",
    "low_rank_factors",
    "max_useful_rank",
    "rank_for_energy",
    "saves_parameters",
    "singular_values",
    "truncated_svd",
    "truncation_error",
    "weight_matrix",
]


# ------------------------------------------------------------------ checks


def _check_matrix(w: np.ndarray) -> np.ndarray:
    """``w`` as a 2-D float64 array, or a ValueError saying what came."""
    w = np.asarray(w)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"expected a non-empty 2-D weight matrix (m, n), got shape {w.shape}")
    return w.astype(np.float64)


def check_rank(rank: int, shape: tuple[int, ...]) -> int:
    """``rank`` as an int if it lies in ``1..min(m, n)`` for a matrix of ``shape``.

    Raises
    ------
    ValueError
        ``rank must be an integer in 1..100 for a weight matrix of shape
        (100, 300), got 0``.
    """
    k = min(shape)
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 1 <= rank <= k:
        raise ValueError(
            f"rank must be an integer in 1..{k} for a weight matrix of shape {tuple(shape)}, "
            f"got {rank!r}"
        )
    return int(rank)


def check_energy(energy: float) -> float:
    """``energy`` as a float if it lies in ``(0, 1]``.

    Raises
    ------
    ValueError
        ``energy must be a number in (0, 1] (the fraction of sum(s^2) kept), got 1.5``.
    """
    if (
        isinstance(energy, bool)
        or not isinstance(energy, numbers.Real)
        or not 0.0 < float(energy) <= 1.0
    ):
        raise ValueError(
            f"energy must be a number in (0, 1] (the fraction of sum(s^2) kept), got {energy!r}"
        )
    return float(energy)


# --------------------------------------------------------------- reshaping


def weight_matrix(weight: np.ndarray) -> np.ndarray:
    """The weight as a matrix: Linear ``(out, in)`` as is, Conv2d as ``(C_out, C_in*kh*kw)``.

    Row ``o`` of the conv matrix is filter ``o`` flattened in C order
    (``c, i, j`` -> column ``(c * kh + i) * kw + j``), so reshaping a
    ``(C_out, C_in*kh*kw)`` matrix back with ``.reshape(C_out, C_in, kh, kw)``
    gives the filters back.
    """
    weight = np.asarray(weight)
    if weight.ndim not in (2, 4):
        raise ValueError(
            "expected a Linear weight (out, in) or a Conv2d weight (C_out, C_in, kh, kw), "
            f"got shape {weight.shape}"
        )
    return weight.reshape(weight.shape[0], -1)


# ------------------------------------------------------------ decomposition


def singular_values(w: np.ndarray) -> np.ndarray:
    """All ``min(m, n)`` singular values of ``w`` (m, n), largest first, float64.

    PyTorch: ``torch.linalg.svdvals(w)``.
    """
    return np.linalg.svd(_check_matrix(w), compute_uv=False)


def truncated_svd(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``rank`` terms of the SVD of ``w``.

    Parameters
    ----------
    w : ndarray, shape (m, n)
    rank : int
        ``r`` in ``1..min(m, n)``.

    Returns
    -------
    U_r : ndarray, shape (m, r), float64
        Orthonormal columns (left singular vectors).
    s_r : ndarray, shape (r,), float64
        The ``r`` largest singular values, largest first.
    Vt_r : ndarray, shape (r, n), float64
        Orthonormal rows (right singular vectors).

    ``U_r @ np.diag(s_r) @ Vt_r`` is the best rank-``r`` approximation of
    ``w`` (Eckart-Young). PyTorch: ``U, s, Vt = torch.linalg.svd(w,
    full_matrices=False)`` then ``U[:, :r], s[:r], Vt[:r]``.
    """
    w64 = _check_matrix(w)
    rank = check_rank(rank, w64.shape)
    U, s, Vt = np.linalg.svd(w64, full_matrices=False)  # U (m, k), s (k,), Vt (k, n)
    return U[:, :rank], s[:rank], Vt[:rank, :]


def low_rank_factors(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin factors ``A`` (m, r) and ``B`` (r, n) with ``A @ B = W_r``, ``sqrt(s)`` on each side.

    ::

        A = U_r * sqrt(s_r)               (m, r)   column i scaled by sqrt(s[i])
        B = sqrt(s_r)[:, None] * Vt_r     (r, n)   row i scaled by sqrt(s[i])

    (why the balanced split: see the module docstring). Computed in float64,
    returned in ``w``'s dtype (float64 for integer input).

    Parameters
    ----------
    w : ndarray, shape (m, n)
    rank : int
        ``r`` in ``1..min(m, n)``.
    """
    U_r, s_r, Vt_r = truncated_svd(w, rank)
    root = np.sqrt(s_r)
    A = U_r * root  # (m, r): broadcasting scales column i
    B = root[:, None] * Vt_r  # (r, n): scales row i
    dtype = np.asarray(w).dtype
    dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
    return A.astype(dtype), B.astype(dtype)


def low_rank_approximation(w: np.ndarray, rank: int) -> np.ndarray:
    """``W_r = U_r diag(s_r) V_r^T``, shape (m, n): the best rank-``r`` approximation of ``w``.

    Float64 (the product is formed before any rounding to ``w``'s dtype).
    """
    U_r, s_r, Vt_r = truncated_svd(w, rank)
    return (U_r * s_r) @ Vt_r


# --------------------------------------------------------------- error, energy


def truncation_error(s: np.ndarray, rank: int) -> float:
    """Eckart-Young: ``||W - W_r||_F = sqrt(sum(s[rank:]^2))``, from all singular values ``s``.

    Parameters
    ----------
    s : ndarray, shape (k,)
        Every singular value of ``W``, largest first (:func:`singular_values`).
    rank : int
        ``r`` in ``1..k``; ``r = k`` gives 0.
    """
    s = np.asarray(s, dtype=np.float64)
    rank = check_rank(rank, (s.size, s.size))
    return float(np.sqrt(np.sum(s[rank:] ** 2)))


def energy_kept(s: np.ndarray, rank: int) -> float:
    """Fraction of ``||W||_F^2`` the first ``rank`` terms keep: ``sum(s[:r]^2) / sum(s^2)``.

    Equals ``1 - (truncation_error / ||W||_F)^2``. A zero matrix keeps all of its (zero) energy: 1.
    """
    s = np.asarray(s, dtype=np.float64)
    rank = check_rank(rank, (s.size, s.size))
    total = np.sum(s**2)
    return 1.0 if total == 0 else float(np.sum(s[:rank] ** 2) / total)


def rank_for_energy(s: np.ndarray, energy: float) -> int:
    """The smallest ``r`` with ``energy_kept(s, r) >= energy``.

    Parameters
    ----------
    s : ndarray, shape (k,)
        Every singular value, largest first.
    energy : float in (0, 1]
        ``1.0`` gives the numerical rank: the first ``r`` whose cumulative
        ``sum(s[:r]^2)`` reaches the total (``k`` unless trailing singular
        values are exactly 0). A zero matrix gives 1.

    Examples
    --------
    >>> rank_for_energy(np.array([3.0, 2.0, 1.0]), 0.9)   # 9/14 = 0.64, 13/14 = 0.93
    2
    """
    energy = check_energy(energy)
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of singular values, got shape {s.shape}")
    cumulative = np.cumsum(s**2)  # cumulative[r - 1] = sum(s[:r]^2)
    if cumulative[-1] == 0:
        return 1
    kept = cumulative / cumulative[-1]  # last entry exactly 1.0
    return int(np.searchsorted(kept, energy, side="left")) + 1  # first index with kept >= energy


# ------------------------------------------------------------------ counting


def factorized_parameters(m: int, n: int, rank: int) -> int:
    """Entries of the two factors of an (m, n) matrix at ``rank``: ``rank * (m + n)``."""
    return rank * (m + n)


def saves_parameters(m: int, n: int, rank: int) -> bool:
    """Whether the factors are smaller than the matrix: ``rank * (m + n) < m * n``."""
    return factorized_parameters(m, n, rank) < m * n


def max_useful_rank(m: int, n: int) -> int:
    """The largest ``r`` with ``r * (m + n) < m * n`` (0 when no rank saves anything).

    ``floor((m * n - 1) / (m + n))``: for LeNet-300-100's layers 216 (300 x
    784), 74 (100 x 300) and 9 (10 x 100); for a 2 x 2 matrix 0 (rank 1
    already needs 4 numbers).
    """
    return (m * n - 1) // (m + n)
