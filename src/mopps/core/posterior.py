"""Beta posterior arithmetic over per-prompt success rates, as pure functions on arrays.

Every prompt tau keeps Beta(alpha_tau, beta_tau) over its success rate gamma_tau. After a rollout of
``trials`` responses with ``successes`` of them correct, MoPPS (arXiv 2507.04632, its discounted
posterior update with temporal decay) sets

    alpha <- discount * alpha + (1 - discount) * prior_alpha + successes
    beta  <- discount * beta  + (1 - discount) * prior_beta  + (trials - successes)

``discount`` (lambda, the reference's ``bandit_decay_ratio``) of 1 is plain conjugate counting; smaller
values forget old evidence geometrically toward the prior, to track a policy that improves.
All functions accept scalars or arrays that broadcast; none mutate their inputs.
"""

from __future__ import annotations

import numpy as np


def discounted_update(alpha, beta, successes, trials, discount, prior_alpha, prior_beta):
    """Posterior after one observation per entry.

    ``alpha``, ``beta``: float arrays (m,), current Beta parameters (> 0).
    ``successes``: float array (m,), successful rollouts, 0 <= successes <= trials (may be fractional,
    e.g. mean reward in [0, 1] times trials).
    ``trials``: float array (m,), rollouts observed per entry (n; may differ per entry; 1 is fine).
    ``discount``: scalar in [0, 1], or float (m,) per entry (learned forgetting, ``mopps.core.drift``).
    ``prior_alpha``, ``prior_beta``: scalars or float arrays (m,), the prior the discount pulls toward.
    Returns ``(alpha, beta)`` as new float64 arrays (m,).
    """
    keep = np.asarray(discount, dtype=np.float64)
    alpha = keep * np.asarray(alpha, dtype=np.float64) + (1.0 - keep) * np.asarray(prior_alpha) + successes
    beta = keep * np.asarray(beta, dtype=np.float64) + (1.0 - keep) * np.asarray(prior_beta) + (
        np.asarray(trials, dtype=np.float64) - successes
    )
    return alpha, beta


def posterior_mean(alpha, beta) -> np.ndarray:
    """Mean success rate alpha / (alpha + beta), float array of the broadcast shape."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return alpha / (alpha + np.asarray(beta, dtype=np.float64))


def posterior_variance(alpha, beta) -> np.ndarray:
    """Variance alpha*beta / ((alpha+beta)^2 (alpha+beta+1)) of the success rate."""
    mean = posterior_mean(alpha, beta)
    total = np.asarray(alpha, dtype=np.float64) + np.asarray(beta, dtype=np.float64)
    # mean (1 - mean) / (total + 1) is the same quantity without total**3, which overflows near 1e102.
    return mean * (1.0 - mean) / (total + 1.0)


def thompson_sample(alpha, beta, rng: np.random.Generator) -> np.ndarray:
    """One draw gamma_hat ~ Beta(alpha, beta) per entry, float64 array of the broadcast shape."""
    return rng.beta(alpha, beta)


# --- Regularised incomplete beta and its inverse (numpy only; scipy is not a core dependency). ---

_LANCZOS_G = 7.0
_LANCZOS_COEFFICIENTS = (
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
)


def log_gamma(x) -> np.ndarray:
    """ln Gamma(x) for x > 0 (Lanczos approximation, ~1e-13 relative error)."""
    x = np.asarray(x, dtype=np.float64)
    # Shift small arguments up by recurrence so the approximation stays accurate: lnG(x) = lnG(x+1) - ln x.
    small = x < 0.5
    shifted = np.where(small, x + 1.0, x) - 1.0
    series = np.full_like(shifted, _LANCZOS_COEFFICIENTS[0])
    for offset, coefficient in enumerate(_LANCZOS_COEFFICIENTS[1:], start=1):
        series = series + coefficient / (shifted + offset)
    t = shifted + _LANCZOS_G + 0.5
    value = 0.5 * np.log(2.0 * np.pi) + (shifted + 0.5) * np.log(t) - t + np.log(series)
    return np.where(small, value - np.log(x), value)


def _beta_continued_fraction(a, b, x, iterations: int = 300) -> np.ndarray:
    """Continued fraction for I_x(a, b) (modified Lentz), vectorised over all arguments."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    for m in range(1, iterations + 1):
        m2 = 2.0 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = np.where(np.abs(d) < tiny, tiny, d)
            c = 1.0 + numerator / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            d = 1.0 / d
            h = h * d * c
        if np.all(np.abs(d * c - 1.0) < 1e-15):
            break
    return h


def regularized_incomplete_beta(a, b, x) -> np.ndarray:
    """I_x(a, b), the Beta(a, b) cumulative distribution function at x in [0, 1]."""
    a, b, x = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, x)))
    x_clipped = np.clip(x, 0.0, 1.0)
    inner = (x_clipped > 0.0) & (x_clipped < 1.0)
    safe_x = np.where(inner, x_clipped, 0.5)
    log_front = (
        log_gamma(a + b) - log_gamma(a) - log_gamma(b)
        + a * np.log(safe_x) + b * np.log1p(-safe_x)
    )
    front = np.exp(log_front)
    # The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
    # on the other side.
    direct = safe_x < (a + 1.0) / (a + b + 2.0)
    fraction_direct = _beta_continued_fraction(a, b, safe_x)
    fraction_mirror = _beta_continued_fraction(b, a, 1.0 - safe_x)
    value = np.where(direct, front * fraction_direct / a, 1.0 - front * fraction_mirror / b)
    value = np.where(x_clipped <= 0.0, 0.0, np.where(x_clipped >= 1.0, 1.0, value))
    return np.clip(value, 0.0, 1.0)


def beta_quantile(alpha, beta, probability, iterations: int = 60) -> np.ndarray:
    """Inverse CDF of Beta(alpha, beta) at ``probability`` by vectorised bisection (~1e-15 absolute)."""
    alpha, beta, probability = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (alpha, beta, probability))
    )
    low = np.zeros_like(alpha)
    high = np.ones_like(alpha)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        below = regularized_incomplete_beta(alpha, beta, middle) < probability
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    return 0.5 * (low + high)


def credible_interval(alpha, beta, mass: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Central credible interval holding ``mass`` of Beta(alpha, beta): ``(lower, upper)`` arrays."""
    mass = float(mass)
    if not 0.0 < mass < 1.0:
        raise ValueError(f"mass = {mass}; mass must lie strictly between 0 and 1")
    tail = 0.5 * (1.0 - mass)
    return beta_quantile(alpha, beta, tail), beta_quantile(alpha, beta, 1.0 - tail)
