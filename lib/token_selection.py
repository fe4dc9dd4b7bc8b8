"""Token selection by one attention layer under label noise: benign, harmful and no overfitting.

Explained in chapter "Benign overfitting in the token selection of attention"
(`chapters/benign-overfitting-attention`), after Sakamoto & Sato (ICML 2025). The model is

    f(X) = nu^T X^T softmax(X W p),    X in R^{T x d},  W in R^{d x d},  p in R^d,

with a fixed head nu and (W, p) trained by full-batch gradient descent on the logistic loss. The data are
sequences of T tokens: token 1 carries the class signal mu_y, token 2 a weak copy rho mu_y, token 3 a weak
copy of the other class rho mu_{-y}, the rest only Gaussian noise; a balanced fraction eta of the labels is
flipped.

Two implementations of the same gradient descent:

* `train_direct` updates (W, p) in R^{d x d} x R^d, with the attention logits computed as X (W p).
* `train` runs the same iterates in coordinates of the training tokens (`reduce`): with p_0 = 0, every
  gradient of p lies in span(W_0^T X^T) and every gradient of W in span(X^T) (x) span(p), so
  p_t = W_0^T X^T a_t and W_t = (I + X^T M_t X) W_0 with a_t in R^m, M_t in R^{m x m}, m = nT. A step then
  costs O(m^2) whatever d is, and many runs (different d, ||mu||, seeds) are one batched tensor program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lib import plotting
from lib.config import Config
from lib.progress import smoke
from lib.runtime import one_thread

# ---------------------------------------------------------------- data


def _stream(seed: int, *keys: int) -> torch.Generator:
    """Return a CPU generator for the stream `keys` of `seed` (independent streams, same on every device)."""
    entropy = np.random.SeedSequence([int(seed) % 2**63, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))


TRAIN_STREAM, TEST_STREAM, INIT_STREAM = 0, 1, 2


def signals(d: int, mu_norm: float, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (mu_+, mu_-) = (||mu|| e_1, ||mu|| e_2) in R^d."""
    if d < 2:
        raise ValueError(f"need d >= 2 for two orthogonal signals, got {d}")
    mu_p, mu_m = torch.zeros(d, dtype=dtype), torch.zeros(d, dtype=dtype)
    mu_p[0], mu_m[1] = mu_norm, mu_norm
    return mu_p, mu_m


def head(d: int, mu_norm: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return the fixed head nu = (mu_+ - mu_-) / ||mu_+ - mu_-|| / ||mu||, so that nu^T mu_{+-} = +-1/sqrt(2)."""
    mu_p, mu_m = signals(d, mu_norm, dtype)
    return (mu_p - mu_m) / torch.linalg.norm(mu_p - mu_m) / mu_norm


@dataclass
class TokenData:
    """n sequences of T tokens in R^d with observed labels y, clean labels y_clean and the flipped set."""

    X: torch.Tensor  # (n, T, d)
    y: torch.Tensor  # (n,) observed labels in {-1, +1}
    y_clean: torch.Tensor  # (n,) labels before flipping
    noisy: torch.Tensor  # (n,) bool, True where the label was flipped
    noise: torch.Tensor  # (n, T, d) the Gaussian part of each token
    mu_norm: float

    @property
    def nu(self) -> torch.Tensor:
        """The fixed head for these data."""
        return head(self.X.shape[-1], self.mu_norm, self.X.dtype)


def n_flipped(n: int, eta: float) -> int:
    """Return the number of flipped labels: ceil(eta n) rounded down to an even number (half per class)."""
    if not 0 <= eta < 0.5:
        raise ValueError(f"label-noise rate eta must be in [0, 0.5), got {eta}")
    return 2 * (math.ceil(eta * n - 1e-9) // 2)


def labels(
    n: int, eta: float, dtype: torch.dtype = torch.float32, balanced: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (y, y_clean, noisy): y_clean = +1 for the first n/2 sequences and -1 for the rest; the first
    `n_flipped(n, eta) / 2` of each class are flipped (balanced, the default), or the first `n_flipped` of class +1."""
    y_clean = torch.cat([torch.ones(n // 2), -torch.ones(n - n // 2)]).to(dtype)
    k = n_flipped(n, eta)  # at most n / 2, since eta < 1/2
    noisy = torch.zeros(n, dtype=torch.bool)
    if balanced:
        noisy[: k // 2] = True
        noisy[n // 2 : n // 2 + k // 2] = True
    else:
        noisy[:k] = True
    return torch.where(noisy, -y_clean, y_clean), y_clean, noisy


def signal_coefficients(y_clean: torch.Tensor, T: int, rho: float, mu_norm: float) -> torch.Tensor:
    """Return the signal part of every token in the coordinates (e_1, e_2), shape (n, T, 2).

    Token 1 carries mu_y, token 2 rho mu_y, token 3 rho mu_{-y}; tokens 4..T none. Here mu_+ = ||mu|| e_1 and
    mu_- = ||mu|| e_2, so a sequence is X = noise + coefficients placed in the first two coordinates.
    """
    pos = (y_clean > 0).to(torch.long)  # column of mu_y: 0 for y = +1, 1 for y = -1
    own, other = 1 - pos, pos
    L = y_clean.new_zeros(y_clean.shape[0], T, 2)
    rows = torch.arange(y_clean.shape[0])
    L[rows, 0, own] = mu_norm
    L[rows, 1, own] = rho * mu_norm
    L[rows, 2, other] = rho * mu_norm
    return L


def sample(
    n: int,
    d: int,
    mu_norm: float,
    *,
    T: int = 8,
    rho: float = 0.1,
    eta: float = 0.0,
    seed: int = 0,
    stream: int = TRAIN_STREAM,
    dtype: torch.dtype = torch.float32,
    balanced: bool = True,
) -> TokenData:
    """Return n sequences of the data model; half of each class first, `n_flipped` labels flipped, balanced.

    Token 1: mu_y + eps; token 2: rho mu_y + eps; token 3: rho mu_{-y} + eps; tokens 4..T: eps, eps ~ N(0, I_d).
    `stream` selects an independent random stream of `seed` (training and test data never share one); the
    noise does not depend on ||mu||, so runs that differ only in ||mu|| share it.
    """
    if T < 4 or n < 2 or n % 2 or d < 2:
        raise ValueError(f"need T >= 4, d >= 2 and an even n >= 2, got T={T}, d={d}, n={n}")
    noise = torch.randn(n, T, d, generator=_stream(seed, stream, d), dtype=torch.float64).to(dtype)
    y, y_clean, noisy = labels(n, eta, dtype, balanced)
    X = noise.clone()
    X[..., :2] += signal_coefficients(y_clean, T, rho, mu_norm)
    return TokenData(X=X, y=y, y_clean=y_clean, noisy=noisy, noise=noise, mu_norm=float(mu_norm))


def init_W(d: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return W_0 with i.i.d. entries uniform on (-1/sqrt(d), 1/sqrt(d)) (PyTorch's default for a d x d layer)."""
    g = _stream(seed, INIT_STREAM, d)
    return ((torch.rand(d, d, generator=g, dtype=torch.float64) * 2 - 1) / math.sqrt(d)).to(dtype)


# ---------------------------------------------------------------- the model, directly in (W, p)


def forward_query(X: torch.Tensor, q: torch.Tensor, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (f, s): the outputs f(X) = nu^T X^T s and the attention s = softmax(X q), for a query q = W p."""
    s = torch.softmax(torch.einsum("...ntd,...d->...nt", X, q), dim=-1)
    # f(X) = nu^T X^T S(X W p) = sum_t s_t <nu, x_t>
    return (s * (X @ nu)).sum(-1), s


def forward(X: torch.Tensor, W: torch.Tensor, p: torch.Tensor, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (f, s) for the parameters (W, p): the model's outputs and attention."""
    # S(X W p): the query q = W p is formed first (d^2 per run), never X W (T d^2 per sequence).
    return forward_query(X, (W @ p.unsqueeze(-1)).squeeze(-1), nu)


def logistic_loss(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the mean logistic loss (1/n) sum_i log(1 + exp(-y_i f_i)) over the last dimension."""
    return torch.nn.functional.softplus(-y * f).mean(-1)


def _token_gradient(s: torch.Tensor, values: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return dL/dz, the gradient of the mean logistic loss with respect to the attention logits z = X q."""
    n = y.shape[-1]
    # l'_i = d/df log(1 + exp(-y f)) / n = -y_i sigmoid(-y_i f_i) / n;  df_i/dz_it = s_it (nu^T x_it - f_i)
    dloss = -y * torch.sigmoid(-y * f) / n
    return dloss.unsqueeze(-1) * s * (values - f.unsqueeze(-1))


def gradients(
    X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, p: torch.Tensor, nu: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (loss, dL/dW, dL/dp) in closed form: with v = sum_i X_i^T dL/dz_i, dL/dW = v p^T, dL/dp = W^T v."""
    q = (W @ p.unsqueeze(-1)).squeeze(-1)
    f, s = forward_query(X, q, nu)
    g = _token_gradient(s, X @ nu, f, y)  # (..., n, T)
    v = torch.einsum("...nt,...ntd->...d", g, X)
    dW = v.unsqueeze(-1) * p.unsqueeze(-2)
    dp = (W.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
    return logistic_loss(f, y), dW, dp


KNOCKOUTS = (None, "frozen_W", "uniform")
"""Switches that remove a mechanism from training: None (the paper's model), "frozen_W" (W stays W_0, only the
query p is trained: the first arXiv version's model) and "uniform" (no token selection: the attention stays
uniform, which is what p = 0 gives, so nothing is trained)."""


def _knockout(knockout: str | None) -> str | None:
    if knockout not in KNOCKOUTS:
        raise ValueError(f"knockout must be one of {KNOCKOUTS}, got {knockout!r}")
    return knockout


def train_direct(
    X: torch.Tensor,
    y: torch.Tensor,
    W0: torch.Tensor,
    nu: torch.Tensor,
    *,
    steps: int,
    lr: float,
    knockout: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (W, p) after `steps` full-batch GD steps on (W, p) from (W0, p = 0); leading run dimensions allowed.

    `knockout="frozen_W"` trains p only; `knockout="uniform"` trains nothing (p = 0: uniform attention).
    """
    knockout = _knockout(knockout)
    W, p = W0.clone(), torch.zeros(W0.shape[:-1], dtype=W0.dtype, device=W0.device)
    if knockout == "uniform":
        return W, p
    for _ in range(steps):
        _, dW, dp = gradients(X, y, W, p, nu)
        W, p = (W if knockout == "frozen_W" else W - lr * dW), p - lr * dp
    return W, p


# ---------------------------------------------------------------- the same GD in token coordinates


@dataclass
class Reduced:
    """Gram matrices of one or many runs (leading run dimension R): everything GD needs, whatever d is.

    m = nT training tokens x_j (rows of X), K_0 = W_0 W_0^T:
    A = X K_0 X^T, S = X X^T, h = X nu (token values); the same with test tokens on the left for evaluation.
    """

    A: torch.Tensor  # (R, m, m)
    S: torch.Tensor  # (R, m, m)
    h: torch.Tensor  # (R, n, T)
    y: torch.Tensor  # (R, n)
    noisy: torch.Tensor  # (R, n) bool
    A_test: torch.Tensor  # (R, m_test, m)
    S_test: torch.Tensor  # (R, m_test, m)
    h_test: torch.Tensor  # (R, n_test, T)
    y_test: torch.Tensor  # (R, n_test)
    specs: list = field(default_factory=list)  # one RunSpec per run

    @property
    def runs(self) -> int:
        """The number of runs R."""
        return self.A.shape[0]


@dataclass(frozen=True)
class RunSpec:
    """One training run: the data model's sizes, the signal strength and the seed."""

    d: int
    mu_norm: float
    seed: int
    n: int = 20
    T: int = 8
    rho: float = 0.1
    eta: float = 0.2
    n_test: int = 400
    balanced: bool = True  # flipped labels split evenly between the classes

    @property
    def snr(self) -> float:
        """The signal-to-noise ratio ||mu|| / (sigma_p sqrt(d)) with sigma_p = 1."""
        return self.mu_norm / math.sqrt(self.d)


def run_data(spec: RunSpec, dtype: torch.dtype = torch.float32) -> tuple[TokenData, TokenData, torch.Tensor]:
    """Return (train, test, W_0) of a run: training data, clean test data from its own stream, initial W."""
    kw = dict(T=spec.T, rho=spec.rho, seed=spec.seed, dtype=dtype)
    train = sample(spec.n, spec.d, spec.mu_norm, eta=spec.eta, stream=TRAIN_STREAM, balanced=spec.balanced, **kw)
    test = sample(spec.n_test, spec.d, spec.mu_norm, eta=0.0, stream=TEST_STREAM, **kw)
    return train, test, init_W(spec.d, spec.seed, dtype)


_BLOCKS: dict[tuple, dict[str, torch.Tensor]] = {}
"""Noise blocks already computed in this process (a few MB each), so that experiments sharing seeds share them."""
_BLOCKS_MAX = 64


def _noise_blocks(spec: RunSpec, device, dtype) -> dict[str, torch.Tensor]:
    """Return the Gram blocks of one (d, seed) that do not depend on ||mu|| (cached: see `_BLOCKS`)."""
    key = (spec.d, spec.seed, spec.n, spec.T, spec.n_test, str(device), dtype)
    if key not in _BLOCKS:
        if len(_BLOCKS) >= _BLOCKS_MAX:
            _BLOCKS.pop(next(iter(_BLOCKS)))
        _BLOCKS[key] = _compute_noise_blocks(spec, device, dtype)
    return _BLOCKS[key]


def _compute_noise_blocks(spec: RunSpec, device, dtype) -> dict[str, torch.Tensor]:
    """Return the products of one (d, seed) that do not depend on ||mu||: noise E, W_0, and their Gram blocks."""
    kw = dict(T=spec.T, seed=spec.seed, dtype=dtype)
    E = sample(spec.n, spec.d, 1.0, stream=TRAIN_STREAM, **kw).noise.reshape(-1, spec.d).to(device)
    Et = sample(spec.n_test, spec.d, 1.0, stream=TEST_STREAM, **kw).noise.reshape(-1, spec.d).to(device)
    W0 = init_W(spec.d, spec.seed, dtype).to(device)
    EW, PW = E @ W0, W0[:2]  # E W_0 and P^T W_0, P = [e_1 e_2]
    K0E, K0P = W0 @ EW.T, W0 @ PW.T  # K_0 E^T, K_0 P
    return {
        "EK0E": EW @ EW.T, "EK0P": EW @ PW.T, "PK0P": PW @ PW.T, "EtK0E": Et @ K0E, "EtK0P": Et @ K0P,
        "EE": E @ E.T, "EP": E[:, :2].clone(), "EtE": Et @ E.T, "EtP": Et[:, :2].clone(),
    }  # fmt: skip


def reduce(specs: list[RunSpec], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Reduced:
    """Return the Gram matrices of every run in `specs`, stacked (runs may differ in d and ||mu||).

    With X = E + L P^T (noise E, signal coefficients L in the coordinates P = [e_1 e_2]), every Gram matrix is
    a noise block plus low-rank signal terms, so runs that share (d, seed) share the expensive O(d^2 m) part.
    """
    if len({(s.n, s.T, s.n_test) for s in specs}) != 1:
        raise ValueError("all runs of one batch need the same n, T and n_test")
    n, T, n_test = specs[0].n, specs[0].T, specs[0].n_test
    blocks: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    keys = ("A", "S", "h", "y", "noisy", "At", "St", "ht", "yt")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    y_test = labels(n_test, 0.0, dtype)[0]
    for spec in specs:
        if (spec.d, spec.seed) not in blocks:
            blocks[(spec.d, spec.seed)] = _noise_blocks(spec, device, dtype)
        B = blocks[(spec.d, spec.seed)]
        y, y_clean, noisy = labels(n, spec.eta, dtype, spec.balanced)
        L = signal_coefficients(y_clean, T, spec.rho, spec.mu_norm).reshape(-1, 2).to(device)
        Lt = signal_coefficients(y_test, T, spec.rho, spec.mu_norm).reshape(-1, 2).to(device)
        # A = X K_0 X^T = E K_0 E^T + E K_0 P L^T + L P^T K_0 E^T + L P^T K_0 P L^T, and likewise below
        EK0PL = B["EK0P"] @ L.T
        parts["A"].append(B["EK0E"] + EK0PL + EK0PL.T + L @ B["PK0P"] @ L.T)
        EPL = B["EP"] @ L.T
        parts["S"].append(B["EE"] + EPL + EPL.T + L @ L.T)
        parts["At"].append(B["EtK0E"] + B["EtK0P"] @ L.T + Lt @ B["EK0P"].T + Lt @ B["PK0P"] @ L.T)
        parts["St"].append(B["EtE"] + B["EtP"] @ L.T + Lt @ B["EP"].T + Lt @ L.T)
        # h = X nu with nu = (e_1 - e_2) / (sqrt(2) ||mu||)
        diff = torch.tensor([1.0, -1.0], dtype=dtype, device=device) / (math.sqrt(2) * spec.mu_norm)
        parts["h"].append(((B["EP"] + L) @ diff).reshape(n, T))
        parts["ht"].append(((B["EtP"] + Lt) @ diff).reshape(n_test, T))
        parts["y"].append(y.to(device))
        parts["noisy"].append(noisy.to(device))
        parts["yt"].append(y_test.to(device))
    st = {k: torch.stack(v) for k, v in parts.items()}
    return Reduced(
        A=st["A"], S=st["S"], h=st["h"], y=st["y"], noisy=st["noisy"],
        A_test=st["At"], S_test=st["St"], h_test=st["ht"], y_test=st["yt"], specs=list(specs),
    )  # fmt: skip


@dataclass
class State:
    """GD iterates in token coordinates: p = W_0^T X^T a and W = (I + X^T M X) W_0."""

    a: torch.Tensor  # (R, m)
    M: torch.Tensor  # (R, m, m)


def zero_state(red: Reduced) -> State:
    """Return the state of p_0 = 0, W = W_0."""
    R, m = red.A.shape[:2]
    return State(a=red.A.new_zeros(R, m), M=red.A.new_zeros(R, m, m))


def train_logits(red: Reduced, state: State) -> torch.Tensor:
    """Return the training attention logits X W p = A a + S M A a, shape (R, n, T)."""
    Aa = (red.A @ state.a.unsqueeze(-1)).squeeze(-1)
    z = Aa + (red.S @ (state.M @ Aa.unsqueeze(-1))).squeeze(-1)
    return z.reshape(red.h.shape)


def test_logits(red: Reduced, state: State) -> torch.Tensor:
    """Return the test attention logits X_test W p = A_test a + S_test M A a, shape (R, n_test, T)."""
    Aa = (red.A @ state.a.unsqueeze(-1)).squeeze(-1)
    z = (red.A_test @ state.a.unsqueeze(-1) + red.S_test @ (state.M @ Aa.unsqueeze(-1))).squeeze(-1)
    return z.reshape(red.h_test.shape)


def outputs(z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (f, s) from attention logits z and token values h = X nu."""
    s = torch.softmax(z, dim=-1)
    return (s * h).sum(-1), s


def step(
    red: Reduced, state: State, lr: float, knockout: str | None = None
) -> tuple[State, torch.Tensor, torch.Tensor]:
    """Return (next state, f, s): one full-batch GD step on (W, p), written in token coordinates.

    `knockout="frozen_W"` keeps W = W_0 (M = 0) and trains p only; `"uniform"` changes nothing (p = 0).
    """
    knockout = _knockout(knockout)
    f, s = outputs(train_logits(red, state), red.h)
    if knockout == "uniform":
        return state, f, s
    # [boa-prop-reduction]: one GD step on (W, p) is one step on the token coordinates (a, M)
    g = _token_gradient(s, red.h, f, red.y).flatten(-2).unsqueeze(-1)  # dL/dz, (R, m, 1); v = X^T g
    # W' = W - lr v p^T  <=>  M' = M - lr g a^T
    M = state.M if knockout == "frozen_W" else torch.baddbmm(state.M, g, state.a.unsqueeze(-2), alpha=-lr)
    # p' = p - lr W^T v  <=>  a' = a - lr (g + M^T S g)
    a = state.a - lr * torch.baddbmm(g, state.M.transpose(-1, -2), red.S @ g).squeeze(-1)
    return State(a=a, M=M), f, s


@dataclass
class History:
    """What `train` logged: at each logged step, per run (and per sample for the attention)."""

    steps: list[int]  # GD steps at the logs (counted from p = 0)
    times: torch.Tensor  # (L,) gradient-flow time tau = sum of step sizes up to each log
    train_acc: torch.Tensor  # (L, R)
    noisy_fit: torch.Tensor  # (L, R) fraction of flipped samples fitted (y_i f_i > 0)
    clean_fit: torch.Tensor  # (L, R)
    test_acc: torch.Tensor  # (L, R)
    train_loss: torch.Tensor  # (L, R)
    test_loss: torch.Tensor  # (L, R) logistic loss on the clean test set
    attention: torch.Tensor  # (L, R, n, T) training attention
    test_relevant: torch.Tensor  # (L, R) mean test attention on token 1
    test_top_relevant: torch.Tensor  # (L, R) fraction of test samples whose largest attention is on token 1
    variance: torch.Tensor  # (L, R, n) accumulated sum over steps of lr s_i1 (1 - s_i1)
    state: State  # the GD iterates after the last step


def evaluate(red: Reduced, state: State) -> dict[str, torch.Tensor]:
    """Return accuracies, fitted fractions, losses and attention statistics of `state`, per run."""
    f, s = outputs(train_logits(red, state), red.h)
    ft, st = outputs(test_logits(red, state), red.h_test)
    fit = (red.y * f > 0).to(f.dtype)
    noisy = red.noisy.to(f.dtype)
    return {
        "train_acc": fit.mean(-1),
        "noisy_fit": (fit * noisy).sum(-1) / noisy.sum(-1).clamp(min=1),
        "clean_fit": (fit * (1 - noisy)).sum(-1) / (1 - noisy).sum(-1).clamp(min=1),
        "test_acc": (red.y_test * ft > 0).to(f.dtype).mean(-1),
        "train_loss": logistic_loss(f, red.y),
        "test_loss": logistic_loss(ft, red.y_test),
        "attention": s,
        "test_relevant": st[..., 0].mean(-1),
        "test_top_relevant": (st[..., 0] > st[..., 1:].amax(-1)).to(f.dtype).mean(-1),
    }


def log_steps(steps: int, every: int | None = None, points: int = 60) -> list[int]:
    """Return the steps to log: every `every` steps, or `points` log-spaced steps, always 0 and `steps`."""
    if every:
        grid = set(range(0, steps + 1, every))
    else:
        grid = {int(round(x)) for x in np.geomspace(1, steps, points)}
    return sorted(grid | {0, steps})


@one_thread
def train(
    red: Reduced,
    *,
    steps: int,
    lr: float,
    logged: list[int] | None = None,
    start: History | None = None,
    knockout: str | None = None,
) -> History:
    """Return the history of `steps` GD steps of every run at once (batched, O(m^2) a step).

    Training starts from p = 0 and W = W_0, or continues from the end of `start` (same runs); `logged` counts
    the steps of this call. `knockout` removes a mechanism (`KNOCKOUTS`): "frozen_W" or "uniform". In the smoke
    run of the full profile only two steps are taken.
    """
    logged = sorted(set(logged or log_steps(steps, every=max(1, steps // 100))))
    if smoke():  # the smoke run of the full profile: two steps, every log moved inside them
        steps = min(steps, 2)
        logged = sorted({min(t, steps) for t in logged})
    state = zero_state(red) if start is None else start.state
    variance = red.h.new_zeros(red.h.shape[:-1]) if start is None else start.variance[-1].to(red.h)
    t0, tau0 = (0, 0.0) if start is None else (start.steps[-1], float(start.times[-1]))
    rows: list[dict] = []
    for t in range(steps + 1):
        if t in logged:
            row = evaluate(red, state)
            row["variance"] = variance.clone()
            rows.append(row)
        if t == steps:
            break
        state, _, s = step(red, state, lr, knockout)
        variance += lr * s[..., 0] * (1 - s[..., 0])
    stack = {k: torch.stack([r[k] for r in rows]).cpu() for k in rows[0]}
    times = torch.tensor([tau0 + lr * t for t in logged], dtype=torch.float64)
    return History(steps=[t0 + t for t in logged], times=times, state=state, **stack)


def subset(red: Reduced, runs: list[int]) -> Reduced:
    """Return the runs `runs` of `red` (to continue training only some of them)."""
    idx = torch.as_tensor(runs, device=red.A.device)
    fields = {k: getattr(red, k)[idx] for k in ("A", "S", "h", "y", "noisy", "A_test", "S_test", "h_test", "y_test")}
    return Reduced(**fields, specs=[red.specs[i] for i in runs])


def history_subset(hist: History, runs: list[int]) -> History:
    """Return the runs `runs` of a history (logs, per-run metrics and final state)."""
    idx = torch.as_tensor(runs)
    per_run = {
        k: getattr(hist, k)[:, idx]
        for k in ("train_acc", "noisy_fit", "clean_fit", "test_acc", "train_loss", "test_loss", "attention",
                  "test_relevant", "test_top_relevant", "variance")
    }  # fmt: skip
    dev = hist.state.a.device
    state = State(a=hist.state.a[idx.to(dev)], M=hist.state.M[idx.to(dev)])
    return History(steps=list(hist.steps), times=hist.times.clone(), state=state, **per_run)


def run_grid(
    specs: list[RunSpec],
    *,
    steps: int,
    lr: float,
    logged: list[int] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    knockout: str | None = None,
) -> History:
    """Return the training history of every run of `specs`, all trained together as one batched program."""
    return train(reduce(specs, device, dtype), steps=steps, lr=lr, logged=logged, knockout=knockout)


def query(
    spec: RunSpec,
    state: State,
    run: int = 0,
    dtype: torch.dtype = torch.float32,
    data: tuple[TokenData, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Return the trained query q = W p in R^d of run `run` of `state`.

    The training data and W_0 are rebuilt from the run's seed, unless `data = (training data, W_0)` is given.
    """
    train_data, W0 = data if data is not None else run_data(spec, dtype)[::2]
    X = train_data.X.reshape(-1, spec.d).to(dtype)
    W0 = W0.to(dtype)
    a, M = state.a[run].cpu().to(dtype), state.M[run].cpu().to(dtype)
    KXa = W0 @ (W0.T @ (X.T @ a))  # K_0 X^T a
    # q = W p = (I + X^T M X) K_0 X^T a
    return KXa + X.T @ (M @ (X @ KXa))


# ---------------------------------------------------------------- regimes


REGIMES = ("no overfitting", "benign", "harmful")


def regime(noisy_fit: torch.Tensor, test_acc: torch.Tensor, *, fit: float = 0.5, good: float = 0.95) -> torch.Tensor:
    """Return 0 (no overfitting: under half the flipped labels fitted), 1 (benign: test >= good), 2 (harmful)."""
    over = noisy_fit >= fit
    return torch.where(~over, 0, torch.where(test_acc >= good, 1, 2))


# ---------------------------------------------------------------- the hand-built benign solution


def benign_query(data: TokenData, beta: float, c: float, token: int = 2) -> torch.Tensor:
    """Return q = beta (mu_+ + mu_-) / ||mu||^2 + c sum_{j flipped} xi_j / ||xi_j||^2 (xi_j: noise of token `token`).

    The signal term gives the relevant token (index 0) of every sequence the logit beta; the memorised
    noise gives token `token` (default index 2, the weak token aligned with the flipped label) of each
    flipped sample a logit of about c, and fresh tokens about c sqrt(|N| / d) N(0, 1).
    """
    d = data.X.shape[-1]
    mu_p, mu_m = signals(d, data.mu_norm, data.X.dtype)
    xi = data.noise[data.noisy, token]  # (|N|, d)
    q = beta * (mu_p + mu_m) / data.mu_norm**2
    return q + c * (xi / (xi * xi).sum(-1, keepdim=True)).sum(0)


def query_metrics(q: torch.Tensor, train: TokenData, test: TokenData) -> dict[str, torch.Tensor]:
    """Return training fit (all, flipped, clean), clean test accuracy and test attention on token 1, for queries q.

    q may carry leading dimensions (one query per row): every metric then has those dimensions.
    """
    Q = q.reshape(-1, q.shape[-1])
    nu = train.nu

    def run(data: TokenData) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.softmax(torch.einsum("ntd,kd->knt", data.X, Q), dim=-1)  # (K, n, T)
        return (s * (data.X @ nu)).sum(-1), s

    f, _ = run(train)
    ft, st = run(test)
    fit = (train.y * f > 0).to(f.dtype)
    out = {
        "train_acc": fit.mean(-1),
        "noisy_fit": fit[:, train.noisy].mean(-1),
        "clean_fit": fit[:, ~train.noisy].mean(-1),
        "test_acc": (test.y * ft > 0).to(f.dtype).mean(-1),
        "test_relevant": st[..., 0].mean(-1),
    }
    return {k: v.reshape(q.shape[:-1]) for k, v in out.items()}


# ---------------------------------------------------------------- theory helpers


def growth(x: torch.Tensor | float, K: int) -> torch.Tensor:
    """Return G_K(x) = 2x + 2 sinh(x - log K): with s = e^x / (e^x + K), dG_K/dx = 1 / (s (1 - s)).

    The paper's growth function is G_T. If an attention gap x obeys dx/dtau = kappa s (1 - s), then
    G_K(x(tau)) = G_K(x(0)) + kappa tau: the gap grows only logarithmically once the token is selected.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    return 2 * x + 2 * torch.sinh(x - math.log(K))


def expected_max_normal(k: int) -> float:
    """Return E[max of k independent standard normals] (numerical integration)."""
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    pdf = torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    density = k * pdf * torch.special.ndtr(x) ** (k - 1)
    return float(torch.trapezoid(x * density, x))


def benign_edges(beta: float, rho: float, d: int, n_noisy: int, T: int) -> tuple[float, float]:
    """Return (c_lo, c_hi): the noise scales between which the hand-built query is a benign interpolator.

    c_lo = (1 - rho) beta + log(1 / rho): a flipped sample's token 3 then outweighs its relevant token enough
    for f to take the flipped sign. c_hi = (1 - rho) beta / (E[max of T - 1 normals] sqrt(n_noisy / d)): the typical
    largest memorised-noise logit of a fresh sequence then reaches the relevant token's margin.
    """
    c_lo = (1 - rho) * beta + math.log(1 / rho)
    c_hi = (1 - rho) * beta / (expected_max_normal(T - 1) * math.sqrt(n_noisy / d))
    return c_lo, c_hi


# ---------------------------------------------------------------- experiment configs


@dataclass(frozen=True)
class RegimeConfig(Config):
    """Experiment 1: three signal strengths at one d, with and without label noise, several seeds, one batch."""

    d: int = 1000  # token dimension
    n: int = 20  # training sequences
    T: int = 8  # tokens per sequence
    rho: float = 0.1  # strength of the weakly relevant tokens
    eta: float = 0.2  # fraction of flipped labels (balanced); the ablation arm uses 0
    lr: float = 5e-3  # GD step size (the paper's)
    steps: int = 1000  # GD steps (the paper's)
    fast_lr: float = 5e-2  # the time-rescaling arm: same tau = lr * steps with 10x fewer steps
    n_test: int = 500  # clean test sequences, drawn from their own stream
    mu_norms: tuple[float, ...] = (3.0, 10.0, 160.0)  # harmful, benign, no overfitting
    reps: int = 4  # seeds per signal strength
    log_every: int = 20  # steps between logs
    PRESETS = {"quick": {}, "full": {"reps": 16, "n_test": 2000}}

    def specs(self, seed: int, eta: float | None = None) -> list[RunSpec]:
        """Return one RunSpec per (signal strength, repetition); repetition k uses seed `seed * 1000 + k`."""
        e = self.eta if eta is None else eta
        kw = dict(n=self.n, T=self.T, rho=self.rho, eta=e, n_test=self.n_test)
        return [RunSpec(self.d, mu, seed * 1000 + k, **kw) for mu in self.mu_norms for k in range(self.reps)]


@dataclass(frozen=True)
class HandBuiltConfig(Config):
    """Experiment 2: the hand-built query beta (mu_+ + mu_-) / ||mu||^2 + c sum_j xi_j / ||xi_j||^2, c swept."""

    d: int = 1000
    n: int = 20
    T: int = 8
    rho: float = 0.1
    eta: float = 0.2
    mu_norm: float = 40.0  # large enough that token 3 of every flipped sample carries the flipped sign
    beta: float = 10.0  # logit of the relevant token
    c_min: float = 0.5
    c_max: float = 2000.0
    n_c: int = 40  # noise scales, log-spaced
    n_test: int = 1000
    PRESETS = {"quick": {}, "full": {"d": 4000, "n_test": 4000, "n_c": 80}}


@dataclass(frozen=True)
class PhaseConfig(Config):
    """Experiment 3: a grid over (d, ||mu||), every point trained in one batched call."""

    ds: tuple[int, ...] = (250, 500, 1000, 2000)
    mu_norms: tuple[float, ...] = (2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 160.0)
    n: int = 20
    T: int = 8
    rho: float = 0.1
    eta: float = 0.2
    lr: float = 5e-2  # 10x the paper's step, 10x fewer steps: the same gradient-flow time tau = 5
    steps: int = 100
    n_test: int = 200
    reps: int = 2  # seeds per grid point
    PRESETS = {
        "quick": {},
        "full": {
            "ds": (250, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000),
            "mu_norms": (2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0, 100.0, 120.0, 160.0, 240.0, 320.0),
            "lr": 5e-3,
            "steps": 1000,
            "n_test": 500,
            "reps": 4,
        },
    }

    def specs(self, seed: int) -> list[RunSpec]:
        """Return the grid's runs, d-major: index (i_d, i_mu, rep)."""
        kw = dict(n=self.n, T=self.T, rho=self.rho, eta=self.eta, n_test=self.n_test)
        return [
            RunSpec(d, mu, seed * 1000 + k, **kw) for d in self.ds for mu in self.mu_norms for k in range(self.reps)
        ]


@dataclass(frozen=True)
class BaselineConfig(Config):
    """Experiment 1b: benign overfitting against uniform attention, where uniform attention is not at its ceiling.

    Uniform attention classifies a clean sequence correctly with probability Phi(||mu|| / sqrt(2T)) (the relevant
    token's value 1/sqrt(2) against T noise values of size 1/||mu||): 0.89 at ||mu|| = 5 and 0.96 at 7, but 0.994
    at 10 (T = 8). (500, 7) has the SNR ||mu|| / sqrt(d) of Experiment 1's benign ||mu|| = 10 at d = 1000 with
    uniform attention below its ceiling; (1000, 5) is a lower SNR; (1000, 10) repeats Experiment 1's benign runs;
    (1000, 20) is where training W matters. The seeds and test sets are Experiment 1's (their Gram blocks are
    shared).
    """

    cases: tuple[tuple[int, float], ...] = ((500, 7.0), (1000, 5.0), (1000, 10.0), (1000, 20.0))  # (d, ||mu||)
    n: int = 20
    T: int = 8
    rho: float = 0.1
    eta: float = 0.2
    lr: float = 5e-2  # 10x the paper's step for a tenth of its steps: tau = 5 (Experiment 1 checks the rescaling)
    steps: int = 100
    n_test: int = 500
    reps: int = 4
    PRESETS = {"quick": {}, "full": {"reps": 16, "n_test": 2000, "lr": 5e-3, "steps": 1000}}

    def specs(self, seed: int) -> list[RunSpec]:
        """Return one RunSpec per (case, repetition); repetition k uses seed `seed * 1000 + k`."""
        kw = dict(n=self.n, T=self.T, rho=self.rho, eta=self.eta, n_test=self.n_test)
        return [RunSpec(d, mu, seed * 1000 + k, **kw) for d, mu in self.cases for k in range(self.reps)]


def uniform_accuracy(mu_norm: float, T: int) -> float:
    """Return Phi(||mu|| / sqrt(2T)): the clean test accuracy of uniform attention in the population.

    Uniform attention gives f = (1/T) sum_t <nu, x_t>; the weak tokens' signals cancel, the relevant token gives
    y / sqrt(2), and the T noise values <nu, eps_t> ~ N(0, 1 / ||mu||^2) add up to N(0, T / ||mu||^2).
    """
    return float(torch.special.ndtr(torch.tensor(mu_norm / math.sqrt(2 * T), dtype=torch.float64)))


@dataclass(frozen=True)
class DelayConfig(Config):
    """Experiment 4: the runs of Experiment 1b trained on from tau = 5 to a long gradient-flow time.

    GD continues in phases of growing step size: `phases` lists (tau at the end of the phase, step size). The
    continuation is exact GD with those steps; in the late phases attention moves slowly and the larger steps
    change the metrics by less than 1e-3 (checked against step 0.2 throughout when the chapter was written).
    """

    phases: tuple[tuple[float, float], ...] = ((50.0, 0.2), (500.0, 1.0), (2000.0, 2.0))
    points: int = 12  # log-spaced logs per phase
    PRESETS = {"quick": {}, "full": {"phases": ((50.0, 0.2), (500.0, 1.0), (2000.0, 2.0), (10000.0, 4.0))}}

    @property
    def tau_end(self) -> float:
        """The gradient-flow time at the end of the continuation."""
        return self.phases[-1][0]

    @property
    def steps(self) -> int:
        """GD steps of the continuation from tau = 5."""
        taus = [5.0] + [t for t, _ in self.phases]
        return sum(int(round((b - a) / lr)) for (a, b), (_, lr) in zip(zip(taus, taus[1:]), self.phases))


def concat_histories(first: History, second: History) -> History:
    """Return `first` followed by `second` (a continuation of the same runs; its first log, a repeat, dropped)."""
    keys = ("train_acc", "noisy_fit", "clean_fit", "test_acc", "train_loss", "test_loss", "attention",
            "test_relevant", "test_top_relevant", "variance")  # fmt: skip
    skip = 1 if second.steps and first.steps and second.steps[0] == first.steps[-1] else 0
    return History(
        steps=list(first.steps) + list(second.steps[skip:]),
        times=torch.cat([first.times, second.times[skip:]]),
        state=second.state,
        **{k: torch.cat([getattr(first, k), getattr(second, k)[skip:]]) for k in keys},
    )


def train_phases(
    red: Reduced,
    start: History,
    phases: tuple[tuple[float, float], ...],
    points: int = 12,
    knockout: str | None = None,
) -> History:
    """Return `start` continued by GD in phases (tau at the end of each phase, step size), logged log-spaced."""
    hist = start
    for tau_end, lr in phases:
        steps = int(round((tau_end - float(hist.times[-1])) / lr))
        if steps <= 0:
            continue
        more = train(red, steps=steps, lr=lr, logged=log_steps(steps, points=points), start=hist, knockout=knockout)
        hist = concat_histories(hist, more)
    return hist


@dataclass(frozen=True)
class PaperCasesConfig(Config):
    """Experiment 5 (full profile): the paper's three synthetic cases at its sizes."""

    cases: tuple[tuple[int, float], ...] = ((2000, 20.0), (4500, 5.0), (1000, 80.0))  # (d, ||mu||)
    n: int = 20
    T: int = 8
    rho: float = 0.1
    eta: float = 0.2
    lr: float = 5e-3
    steps: int = 1000
    n_test: int = 1000
    reps: int = 8
    PRESETS = {"quick": {}, "full": {}}  # the chapter runs it in the full profile only

    def specs(self, seed: int) -> list[RunSpec]:
        """Return one RunSpec per (case, repetition)."""
        kw = dict(n=self.n, T=self.T, rho=self.rho, eta=self.eta, n_test=self.n_test)
        return [RunSpec(d, mu, seed * 1000 + k, **kw) for d, mu in self.cases for k in range(self.reps)]


# ---------------------------------------------------------------- summaries for the chapter


def runs_where(specs: list[RunSpec], *, flipped: bool | None = None, **fields) -> list[int]:
    """Return the indices of the runs whose spec has the given field values (e.g. `mu_norm=10.0`); `flipped=True`
    keeps the runs with label noise (eta > 0), `flipped=False` those without."""
    return [
        r
        for r, sp in enumerate(specs)
        if all(getattr(sp, k) == v for k, v in fields.items()) and (flipped is None or (sp.eta > 0) == flipped)
    ]


def final_means(hist: History, specs: list[RunSpec]) -> dict[tuple[float, float], dict[str, float]]:
    """Return, per (||mu||, eta), the mean over repetitions of every metric at the last log."""
    groups: dict[tuple[float, float], list[int]] = {}
    for r, sp in enumerate(specs):
        groups.setdefault((sp.mu_norm, sp.eta), []).append(r)
    keys = ("train_acc", "noisy_fit", "clean_fit", "test_acc", "test_loss", "test_relevant", "test_top_relevant")
    return {g: {k: float(getattr(hist, k)[-1, idx].mean()) for k in keys} for g, idx in groups.items()}


def attention_groups(hist: History, red: Reduced, runs: list[int]) -> dict[str, torch.Tensor]:
    """Return mean training attention over time, shape (L,), for clean and flipped samples of `runs`.

    Keys: 'clean: token 1', 'flipped: token 1', 'flipped: token 3', 'flipped: tokens 4-T'.
    """
    att = hist.attention[:, runs]  # (L, r, n, T)
    noisy = red.noisy[runs].cpu()  # (r, n)
    clean_w, noisy_w = (~noisy).to(att.dtype), noisy.to(att.dtype)

    def mean(values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (values * w).sum((-1, -2)) / w.sum()

    return {
        "clean: token 1": mean(att[..., 0], clean_w),
        "flipped: token 1": mean(att[..., 0], noisy_w),
        "flipped: token 3": mean(att[..., 2], noisy_w),
        "flipped: tokens 4-T": mean(att[..., 3:].sum(-1), noisy_w),
    }


def hand_built_sweep(cfg: HandBuiltConfig, seed: int) -> dict:
    """Return the c sweep of the hand-built query: noise scales, metrics per scale, and the predicted edges."""
    train_data = sample(cfg.n, cfg.d, cfg.mu_norm, T=cfg.T, rho=cfg.rho, eta=cfg.eta, seed=seed)
    test_data = sample(cfg.n_test, cfg.d, cfg.mu_norm, T=cfg.T, rho=cfg.rho, seed=seed, stream=TEST_STREAM)
    cs = torch.logspace(math.log10(cfg.c_min), math.log10(cfg.c_max), cfg.n_c, dtype=torch.float64)
    Q = torch.stack([benign_query(train_data, cfg.beta, float(c)) for c in cs])
    c_lo, c_hi = benign_edges(cfg.beta, cfg.rho, cfg.d, int(train_data.noisy.sum()), cfg.T)
    probes = {"c_lo / 2": c_lo / 2, "2 c_lo": 2 * c_lo, "sqrt(c_lo c_hi)": math.sqrt(c_lo * c_hi), "3 c_hi": 3 * c_hi}
    Qp = torch.stack([benign_query(train_data, cfg.beta, c) for c in probes.values()])
    at = query_metrics(Qp, train_data, test_data)
    return {
        "cs": cs,
        "metrics": query_metrics(Q, train_data, test_data),
        "c_lo": c_lo,
        "c_hi": c_hi,
        "probes": {name: {k: float(v[i]) for k, v in at.items()} for i, name in enumerate(probes)},
    }


def noisy_fit_boundary(noisy_fit: torch.Tensor, mu_norms: tuple[float, ...], level: float = 0.5) -> list[float]:
    """Return, per row of `noisy_fit` (d, ||mu||), the ||mu|| where the flipped-label fit last falls below `level`
    (log-linear interpolation between grid points; nan where the row does not cross `level` inside the grid)."""
    logs = np.log(np.asarray(mu_norms, dtype=float))
    out = []
    for row in np.asarray(noisy_fit, dtype=float):
        below = np.nonzero(row < level)[0]
        above = np.nonzero(row >= level)[0]
        if len(below) == 0 or len(above) == 0 or above.max() + 1 >= len(row):
            out.append(float("nan"))
            continue
        i = int(above.max())  # last grid point that still overfits
        w = (row[i] - level) / (row[i] - row[i + 1])
        out.append(float(np.exp(logs[i] + w * (logs[i + 1] - logs[i]))))
    return out


def reference_arms(red: Reduced) -> dict[str, torch.Tensor]:
    """Return the clean test accuracy of two fixed attentions, per run: uniform (no token selection) and oracle
    (all attention on the relevant token 1). They bracket what any learned token selection can do."""
    uniform = (red.y_test * red.h_test.mean(-1) > 0).to(red.h.dtype).mean(-1)
    oracle = (red.y_test * red.h_test[..., 0] > 0).to(red.h.dtype).mean(-1)
    return {"uniform": uniform, "oracle": oracle}


def project_out(q: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Return q minus its orthogonal projection onto the span of the rows of `vectors`."""
    Q, _ = torch.linalg.qr(vectors.T.to(torch.float64))
    q64 = q.to(torch.float64)
    return (q64 - Q @ (Q.T @ q64)).to(q.dtype)


def memorisation_ablation(spec: RunSpec, state: State, run: int = 0) -> dict[str, dict[str, float]]:
    """Return the metrics of a trained run's query q, of q with the flipped samples' noise removed, and of q with
    the noise of as many clean samples removed (control arm): which component of q fits the flipped labels?"""
    train_data, test_data, W0 = run_data(spec)
    q = query(spec, state, run, data=(train_data, W0))
    flipped = train_data.noise[train_data.noisy].reshape(-1, spec.d)  # the noise of every token of the flipped
    clean_idx = torch.nonzero(~train_data.noisy).squeeze(-1)[: int(train_data.noisy.sum())]
    control = train_data.noise[clean_idx].reshape(-1, spec.d)
    m = query_metrics(torch.stack([q, project_out(q, flipped), project_out(q, control)]), train_data, test_data)
    arms = ("trained", "no memorisation", "control")
    return {arm: {k: float(v[i]) for k, v in m.items()} for i, arm in enumerate(arms)}


# Figures (drawn with lib.plotting's vocabulary; each returns its figure)


def plot_regimes(hist: History, specs: list[RunSpec], cfg: RegimeConfig):
    """Draw training accuracy, flipped fit and clean test accuracy over the GD steps, one panel per ||mu|| (Exp. 1)."""
    steps = np.array(hist.steps)
    fig, axes = plotting.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, mu in zip(axes, cfg.mu_norms):
        idx = runs_where(specs, mu_norm=mu, flipped=True)
        ax.plot(steps, hist.train_acc[:, idx].mean(1), label="training accuracy")
        ax.plot(steps, hist.noisy_fit[:, idx].mean(1), "--", label="flipped labels fitted")
        ax.plot(steps, hist.test_acc[:, idx].mean(1), ":", lw=2.5, label="clean test accuracy")
        title = f"||mu|| = {mu:g}  (SNR = {mu / math.sqrt(cfg.d):.2f})"
        plotting.label(ax, x="GD step", y="fraction", title=title, ylim=(-0.03, 1.03))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=3)
    return fig


def plot_attention(hist: History, red: Reduced, specs: list[RunSpec], cfg: RegimeConfig):
    """Draw the mean training attention of clean and flipped sequences over the GD steps, per ||mu|| (Exp. 1)."""
    steps = np.array(hist.steps)
    fig, axes = plotting.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, mu in zip(axes, cfg.mu_norms):
        groups = attention_groups(hist, red, runs_where(specs, mu_norm=mu, flipped=True))
        for (name, curve), ls in zip(groups.items(), ("-", "--", "-.", ":")):
            ax.plot(steps, curve, ls, lw=2, label=name)
        plotting.label(ax, x="GD step", y="mean attention", title=f"||mu|| = {mu:g}", ylim=(-0.03, 1.03))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=4)
    return fig


def plot_arms(means: dict, arms: dict[str, torch.Tensor], specs: list[RunSpec], ablation: dict, cfg: RegimeConfig):
    """Draw the clean test accuracy of the trained runs (with and without label noise) beside uniform and oracle
    attention, and the flipped fit of the trained query and of its memorisation ablation's arms (Exp. 1)."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(10, 3.6))
    series = {
        f"trained, eta = {cfg.eta:g}": [means[(mu, cfg.eta)]["test_acc"] for mu in cfg.mu_norms],
        "trained, eta = 0": [means[(mu, 0.0)]["test_acc"] for mu in cfg.mu_norms],
    }
    for name in ("uniform", "oracle"):
        series[f"{name} attention"] = [float(arms[name][runs_where(specs, mu_norm=mu)].mean()) for mu in cfg.mu_norms]
    plotting.bars(ax, [f"||mu|| = {mu:g}" for mu in cfg.mu_norms], series)
    plotting.label(ax, y="clean test accuracy", ylim=(0.5, 1.02))
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2)
    mus = list(ablation)
    fits = {arm: [ablation[mu][arm]["noisy_fit"] for mu in mus] for arm in ("trained", "no memorisation", "control")}
    plotting.bars(bx, [f"||mu|| = {mu:g}" for mu in mus], fits, width=0.81)
    plotting.label(bx, y="flipped labels fitted", ylim=(0, 1.05))
    bx.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3)
    return fig


def plot_baseline(cases: dict, cfg: BaselineConfig):
    """Draw, per (d, ||mu||), the test accuracy gain over uniform attention, the test attention on token 1 and the
    flipped fit, with W trained and with W frozen (Experiment 1b)."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(11, 3.6))
    groups = [f"({d}, {mu:g})" for d, mu in cfg.cases]
    arms = ("trained W", "frozen W")
    plotting.bars(ax, groups, {arm: [c[arm]["gain"] for c in cases.values()] for arm in arms}, width=0.76)
    x = np.arange(len(groups))
    for j, arm in enumerate(arms):
        for k, (key, hatch, what) in enumerate(
            (("test_relevant", "", "test attention on token 1"), ("noisy_fit", "//", "flipped fit"))
        ):
            values = [c[arm][key] for c in cases.values()]
            bx.bar(x + (2 * k + j - 1.5) * 0.2, values, 0.2, color=f"C{j}", hatch=hatch, edgecolor="white",
                   label=f"{arm}: {what}")  # fmt: skip
    plotting.reference(ax, 0, color="0.3", ls="-")
    plotting.label(ax, x="(d, ||mu||)", y="test accuracy minus uniform attention's", legend=True)
    plotting.reference(bx, 0.5, color="0.3", ls=":")
    bx.set_xticks(x, groups)
    plotting.label(bx, x="(d, ||mu||)", y="fraction", ylim=(0, 1.05))
    bx.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2)
    return fig


def plot_hand_built(sweep: dict):
    """Draw the hand-built query's fits, test accuracy and test attention against its noise scale c, with the
    predicted edges c_lo and c_hi (Experiment 2)."""
    fig, ax = plotting.subplots(1, 1, figsize=(6.4, 3.8))
    cs, met = sweep["cs"].numpy(), sweep["metrics"]
    ax.semilogx(cs, met["noisy_fit"], "--", lw=2, label="flipped labels fitted")
    ax.semilogx(cs, met["clean_fit"], "-.", label="clean training labels fitted")
    ax.semilogx(cs, met["test_acc"], "-", lw=2, label="clean test accuracy")
    ax.semilogx(cs, met["test_relevant"], ":", lw=2, label="test attention on token 1")
    for edge, name in ((sweep["c_lo"], "$c_{lo}$"), (sweep["c_hi"], "$c_{hi}$")):
        plotting.reference(ax, x=edge, color="0.4", ls=(0, (1, 3)))
        ax.text(edge * 1.08, 0.05, name)
    plotting.label(ax, x="noise scale c of the memorised term", y="fraction")
    ax.legend(fontsize=8, loc="center left")
    return fig


def plot_phase(noisy_fit, test_acc, regimes, boundary: list[float], cfg: PhaseConfig):
    """Draw the phase diagram over (d, ||mu||): flipped fit, clean test accuracy, and the regimes with the measured
    no-overfitting boundary and a line of constant SNR through its point at the largest d (Experiment 3)."""
    from matplotlib.colors import ListedColormap

    fig, axes = plotting.subplots(1, 3, figsize=(12, 3.8))
    for ax, data, title, cmap in (
        (axes[0], noisy_fit, "flipped labels fitted", "viridis"),
        (axes[1], test_acc, "clean test accuracy", "magma"),
    ):
        image = plotting.heatmap(ax, data, title=title, cmap=cmap, vmin=0, vmax=1, origin="lower")
        fig.colorbar(image, ax=ax, shrink=0.85)
    colours = ListedColormap([plotting.PALETTE[0], plotting.PALETTE[2], plotting.PALETTE[1]])  # none, benign, harmful
    image = plotting.heatmap(axes[2], regimes, title="regime", cmap=colours, vmin=-0.5, vmax=2.5, origin="lower")
    colourbar = fig.colorbar(image, ax=axes[2], shrink=0.85, ticks=[0, 1, 2])
    colourbar.ax.set_yticklabels(["none", "benign", "harmful"])

    def column(mu):  # the (fractional) column of ||mu|| on the grid's log scale
        return np.interp(np.log(mu), np.log(cfg.mu_norms), np.arange(len(cfg.mu_norms)))

    ok = [i for i, b in enumerate(boundary) if np.isfinite(b)]
    if ok:
        axes[2].plot([column(boundary[i]) for i in ok], ok, "ko", label="measured boundary")
        d0, b0 = cfg.ds[ok[-1]], boundary[ok[-1]]
        iso = [column(b0 * math.sqrt(d / d0)) for d in cfg.ds]
        axes[2].plot(iso, np.arange(len(cfg.ds)), "w--", lw=2, label="constant SNR")
        axes[2].legend(fontsize=7, loc="lower left")
    for ax in axes:
        plotting.ticks(ax, range(len(cfg.mu_norms)), labels=[f"{mu:g}" for mu in cfg.mu_norms])
        plotting.ticks(ax, range(len(cfg.ds)), axis="y", labels=[str(d) for d in cfg.ds])
        plotting.label(ax, x="||mu||", y="d")
        ax.tick_params(axis="x", labelsize=7)
    return fig


def plot_delay(series: dict, tau, fitted: list[float]):
    """Draw the test accuracy gain over uniform attention, the test attention on token 1 and the clean test loss
    against gradient-flow time, per (d, ||mu||), with the span of times at which runs first fit (Experiment 4)."""
    fig, axes = plotting.subplots(1, 3, figsize=(12, 3.5))
    for j, ((d, mu), v) in enumerate(series.items()):
        for ax, key in zip(axes, ("gain", "test_relevant", "test_loss")):
            ax.semilogx(tau[1:], v[key][1:], ["-", "--", "-.", ":"][j], lw=2, color=f"C{j}", label=f"({d}, {mu:g})")
    plotting.reference(axes[0], 0, color="0.3", ls="-")
    ylabels = ("test accuracy minus uniform's", "test attention on token 1", "clean test loss")
    for ax, ylabel in zip(axes, ylabels):
        if fitted:
            ax.axvspan(min(fitted), max(fitted), color="0.85", lw=0)
        plotting.label(ax, x="gradient-flow time tau", y=ylabel)
    axes[0].legend(fontsize=8, title="(d, ||mu||)", title_fontsize=8)
    return fig


def plot_paper_cases(values: dict, cfg: PaperCasesConfig):
    """Draw training accuracy, flipped fit and clean test accuracy of the paper's three cases (Experiment 5)."""
    fig, ax = plotting.subplots(1, 1, figsize=(6.4, 3.6))
    cases = [values[k] for k in ("balanced", "noise", "signal")]  # in the order of cfg.cases
    metrics = (("train_acc", "training accuracy"), ("noisy_fit", "flipped labels fitted"),
               ("test_acc", "clean test accuracy"))  # fmt: skip
    series = {text: [c[key] for c in cases] for key, text in metrics}
    plotting.bars(ax, [f"(d, ||mu||) = ({d}, {mu:g})" for d, mu in cfg.cases], series, width=0.81)
    plotting.label(ax, y="fraction", ylim=(0, 1.05))
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3)
    return fig
