"""Bayesian sum-product networks: structure, likelihood, and two posterior samplers over induced trees.

Explained in chapter "Bayesian sum-product networks" (`chapters/bayesian-spn`), after
Yokoi & Sato, "Top-Down Bayesian Posterior Sampling for Sum-Product Networks" (arXiv 2406.12353),
with the bottom-up Gibbs sampler of Trapp et al. (NeurIPS 2019) as the baseline.

Notation (the paper's): a datum x_n picks an induced tree z_n (one child per visited sum node);
sum weights w_s ~ Dir(alpha_s) and Bernoulli leaf parameters theta ~ Beta(a_d, b_d) are integrated out.
Counts: n_{sc} (data whose tree takes edge s -> c), n_s = sum_c n_{sc}; per leaf l and variable d in
its scope, m_l data routed to l of which k_{ld} have x_d = 1.

* `build_rat_spn`: a RAT-SPN-style network (random balanced region splits, repetitions at the root).
* `log_likelihood`, `log_marginal`: log-space evaluation (torch, on any device).
* `bottom_up_gibbs`: the baseline; evaluates every node for every datum (numba loop over data, float64,
  like the top-down kernel; or torch, vectorised over data, on any device).
* `top_down_gibbs`: the paper's Metropolis-Hastings-within-Gibbs; touches only the datum's trees (numba).
* `enumerate_trees`, `exact_posterior`: the exact posterior over joint trees of a tiny model.
* `trace_trees`: a compiled chain that records every sweep's trees (for the comparison with enumeration).
* `tune_hyperparameters`: empirical Bayes for alpha and (a_d, b_d), tied per dimension, on subsamples.
* `plot_exactness`, `plot_speed`, `plot_predictive`, `plot_tuning`: the chapter's figures.

Run `python -m lib.spn` for a benchmark of both samplers at three sizes. Both compiled kernels use numba
(requirements: numba==0.68.1) and run on one CPU thread in every profile; their timings are CPU seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba
import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln

from lib.config import Config
from lib.plotting import PALETTE, label, subplots, ticks

# ----------------------------------------------------------------------------------------------------
# Structure
# ----------------------------------------------------------------------------------------------------


@dataclass
class Region:
    """One region of the region graph: a leaf region (K leaves) or a sum region (K sums over its partitions)."""

    scope: np.ndarray
    kind: str  # "leaf" or "sum"
    n_nodes: int
    first: int = 0  # first global sum id (sum region) or leaf id (leaf region)
    parts: list[tuple[int, int]] = field(default_factory=list)  # (left region, right region)
    n_children: int = 0  # C: children (products) of each sum node of this region
    prod_first: int = 0  # global id of the region's first product


@dataclass
class SPNStructure:
    """A RAT-SPN-style network in flat arrays: sums [0, S), leaves S + [0, L) in one node-id space."""

    n_vars: int
    regions: list[Region]  # topological order: children before parents; the root region is last
    sum_ptr: np.ndarray  # (S+1,) edges of sum s are sum_ptr[s]:sum_ptr[s+1]
    edge_prod: np.ndarray  # (E,) product reached by each edge
    edge_sum: np.ndarray  # (E,) sum owning each edge
    prod_left: np.ndarray  # (P,) node id of the left child
    prod_right: np.ndarray  # (P,) node id of the right child
    leaf_ptr: np.ndarray  # (L+1,) slots of leaf l are leaf_ptr[l]:leaf_ptr[l+1]
    leaf_vars: np.ndarray  # (slots,) variable of each slot
    _tree_size: int | None = field(default=None, repr=False)
    _by_var: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_sums(self) -> int:
        """Return S, the number of sum nodes."""
        return len(self.sum_ptr) - 1

    @property
    def n_edges(self) -> int:
        """Return E, the number of sum-node edges."""
        return len(self.edge_prod)

    @property
    def n_products(self) -> int:
        """Return P, the number of product nodes."""
        return len(self.prod_left)

    @property
    def n_leaves(self) -> int:
        """Return the number of leaf nodes."""
        return len(self.leaf_ptr) - 1

    @property
    def n_nodes(self) -> int:
        """Return the number of nodes |G| = S + P + L."""
        return self.n_sums + self.n_products + self.n_leaves

    def slots_by_var(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (slots sorted by variable, bounds): variable d's leaf slots are slots[bounds[d]:bounds[d+1]]."""
        if self._by_var is None:
            order = np.argsort(self.leaf_vars, kind="stable")
            bounds = np.searchsorted(self.leaf_vars[order], np.arange(self.n_vars + 1))
            self._by_var = (order, bounds)
        return self._by_var

    def sum_regions(self) -> np.ndarray:
        """Return (R, 4) int64 rows (first sum, sums, first product, children) of the sum regions, bottom-up.

        The sums of one region share their children: sum s of region r has edges to the products
        first product + 0 .. children - 1, in order (what the compiled bottom-up pass relies on).
        """
        rows = [(r.first, r.n_nodes, r.prod_first, r.n_children) for r in self.regions if r.kind == "sum"]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 4)

    def leaf_regions(self) -> np.ndarray:
        """Return (R_leaf, 2) int64 rows (first leaf, leaves) of the leaf regions."""
        rows = [(r.first, r.n_nodes) for r in self.regions if r.kind == "leaf"]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def tree_size(self) -> int:
        """Return the number of nodes of one induced tree (the same for every tree of a balanced RAT-SPN)."""
        if self._tree_size is None:
            trees = enumerate_trees(self, limit=1)
            self._tree_size = int((trees[0] >= 0).sum() * 2 + len(_tree_leaves(self, trees[0])))
        return self._tree_size


def build_rat_spn(
    n_vars: int, depth: int, n_repetitions: int, n_sums: int, n_leaves: int, seed: int = 0
) -> SPNStructure:
    """Return a RAT-SPN-style structure: J random balanced splits at the root, halving to `depth`.

    Each internal region holds `n_sums` (K_sum) sum nodes over all K_left x K_right products of its two
    child regions; each leaf region holds `n_leaves` (K_leaf) factorised Bernoulli leaves; the root is one
    sum node over the products of all J repetitions.
    """
    for nm, v in (
        ("n_vars", n_vars),
        ("depth", depth),
        ("n_repetitions", n_repetitions),
        ("n_sums", n_sums),
        ("n_leaves", n_leaves),
    ):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm} must be a positive integer, got {v!r}")
    if n_vars < 2:
        raise ValueError("an SPN needs at least 2 variables for a product split")
    rng = np.random.default_rng(seed)
    regions: list[Region] = []

    def grow(scope: np.ndarray, level: int) -> int:
        if level == depth or len(scope) == 1:
            regions.append(Region(np.sort(scope), "leaf", n_leaves))
        else:
            half = len(scope) // 2
            left, right = grow(scope[:half], level + 1), grow(scope[half:], level + 1)
            regions.append(Region(np.sort(scope), "sum", n_sums, parts=[(left, right)]))
        return len(regions) - 1

    parts = []
    for _ in range(n_repetitions):
        perm = rng.permutation(n_vars)
        half = n_vars // 2
        parts.append((grow(perm[:half], 1), grow(perm[half:], 1)))
    regions.append(Region(np.arange(n_vars), "sum", 1, parts=parts))
    return _flatten(n_vars, regions)


def _flatten(n_vars: int, regions: list[Region]) -> SPNStructure:
    """Return the flat arrays of a region graph (the root region must be last)."""
    n_sum = n_leaf = n_prod = 0
    # Root sum gets id 0 so that every traversal starts at node 0.
    order = [len(regions) - 1] + list(range(len(regions) - 1))
    for r in order:
        reg = regions[r]
        if reg.kind == "sum":
            reg.first, n_sum = n_sum, n_sum + reg.n_nodes
        else:
            reg.first, n_leaf = n_leaf, n_leaf + reg.n_nodes
    sum_ptr, edge_prod, prod_left, prod_right = [0], [], [], []
    leaf_ptr, leaf_vars = [0], []
    node_id = {}  # region -> node-id of its first node in the unified space

    for r, reg in enumerate(regions):
        node_id[r] = reg.first if reg.kind == "sum" else n_sum + reg.first
    sum_rows: dict[int, list[int]] = {}
    for r in order:
        reg = regions[r]
        if reg.kind == "leaf":
            continue
        reg.prod_first = n_prod
        for a, b in reg.parts:
            for i in range(regions[a].n_nodes):
                for j in range(regions[b].n_nodes):
                    prod_left.append(node_id[a] + i)
                    prod_right.append(node_id[b] + j)
                    n_prod += 1
        reg.n_children = n_prod - reg.prod_first
        for k in range(reg.n_nodes):
            sum_rows[reg.first + k] = list(range(reg.prod_first, n_prod))
    for s in range(n_sum):
        edge_prod.extend(sum_rows[s])
        sum_ptr.append(len(edge_prod))
    leaf_regions = sorted((reg.first, reg) for reg in regions if reg.kind == "leaf")
    for _, reg in leaf_regions:
        for _k in range(reg.n_nodes):
            leaf_vars.extend(reg.scope.tolist())
            leaf_ptr.append(len(leaf_vars))
    sum_ptr = np.asarray(sum_ptr, dtype=np.int64)
    edge_sum = np.repeat(np.arange(n_sum), np.diff(sum_ptr))
    as64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return SPNStructure(
        n_vars,
        regions,
        sum_ptr,
        as64(edge_prod),
        as64(edge_sum),
        as64(prod_left),
        as64(prod_right),
        as64(leaf_ptr),
        as64(leaf_vars),
    )


# ----------------------------------------------------------------------------------------------------
# Parameters, hyperparameters, likelihood
# ----------------------------------------------------------------------------------------------------


@dataclass
class Hyper:
    """Hyperparameters: Dirichlet alpha per edge (alpha_{sc}) and Beta(a_d, b_d) per variable."""

    alpha_edge: np.ndarray
    a_var: np.ndarray
    b_var: np.ndarray

    @staticmethod
    def fixed(spn: SPNStructure, alpha: float = 1.0, a: float = 0.5, b: float = 0.5) -> Hyper:
        """Return constant hyperparameters: alpha_{sc} = alpha, Beta(a, b) leaves (Trapp et al.'s defaults)."""
        if min(alpha, a, b) <= 0:
            raise ValueError("hyperparameters must be positive")
        return Hyper(np.full(spn.n_edges, float(alpha)), np.full(spn.n_vars, float(a)), np.full(spn.n_vars, float(b)))

    def alpha_sum(self, spn: SPNStructure) -> np.ndarray:
        """Return alpha_s = sum_c alpha_{sc} per sum node."""
        return np.add.reduceat(self.alpha_edge, spn.sum_ptr[:-1])


@dataclass
class Params:
    """Explicit parameters: sum weights per edge and Bernoulli means per leaf slot."""

    weights: np.ndarray  # (E,), summing to one over each sum node's edges
    theta: np.ndarray  # (slots,), P(x_d = 1) of leaf l's variable d


def _region_arrays(spn: SPNStructure, params: Params, device, dtype):
    """Return per-region torch views: log-weights (K x C) for sum regions, log theta pairs for leaf regions."""
    out = {}
    for r, reg in enumerate(spn.regions):
        if reg.kind == "sum":
            e0 = spn.sum_ptr[reg.first]
            w = params.weights[e0 : e0 + reg.n_nodes * reg.n_children].reshape(reg.n_nodes, reg.n_children)
            out[r] = torch.as_tensor(w, dtype=dtype, device=device)
        else:
            s0 = spn.leaf_ptr[reg.first]
            th = params.theta[s0 : s0 + reg.n_nodes * len(reg.scope)].reshape(reg.n_nodes, len(reg.scope))
            th = torch.as_tensor(th, dtype=dtype, device=device)
            out[r] = (th.log().T.contiguous(), torch.log1p(-th).T.contiguous())
    return out


def _products(spn: SPNStructure, reg: Region, values: dict, rows=None) -> torch.Tensor:
    """Return log-values of a sum region's products (N x C): log S_A(x) + log S_B(x) over its partitions."""
    blocks = []
    for a, b in reg.parts:
        la, lb = values[a], values[b]
        if rows is not None:
            la, lb = la[rows], lb[rows]
        blocks.append((la[:, :, None] + lb[:, None, :]).reshape(la.shape[0], -1))
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 1)


def _upward(spn: SPNStructure, X: torch.Tensor, arrays: dict, mask: torch.Tensor | None = None) -> dict:
    """Return log-values (N x K_r) of every region's nodes, evaluated bottom-up (mask: 1 = observed)."""
    values = {}
    leaf_region = next(r for r, reg in enumerate(spn.regions) if reg.kind == "leaf")
    Xf = X.to(arrays[leaf_region][0].dtype)  # the dtype the parameters were built in
    for r, reg in enumerate(spn.regions):
        if reg.kind == "leaf":
            lt, l1t = arrays[r]
            xs = Xf[:, reg.scope]
            # log p(x_d | theta) = x log theta + (1 - x) log(1 - theta); a marginalised variable contributes 0
            if mask is None:
                values[r] = xs @ lt + (1 - xs) @ l1t
            else:
                ms = mask[:, reg.scope].to(Xf.dtype)
                values[r] = (xs * ms) @ lt + ((1 - xs) * ms) @ l1t
        else:
            prods = _products(spn, reg, values)
            top = prods.amax(1, keepdim=True)
            # log S_s(x) = log sum_c w_{sc} exp(log S_c(x)), computed as a matmul in the shifted exp domain
            values[r] = top + torch.log(torch.exp(prods - top) @ arrays[r].T)
    return values


def log_likelihood(spn: SPNStructure, params: Params, X, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """Return log p(x_n) for each row of X (N,), by one bottom-up pass in log space."""
    X = _as_data(spn, X, device)
    vals = _upward(spn, X, _region_arrays(spn, params, X.device, dtype))
    return vals[len(spn.regions) - 1][:, 0]


def log_marginal(spn: SPNStructure, params: Params, X, observed, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """Return log p(x_observed) for each row: unobserved variables (observed == 0) are summed out."""
    X = _as_data(spn, X, device)
    mask = torch.as_tensor(np.asarray(observed), device=X.device)
    if mask.shape != X.shape:
        raise ValueError(f"observed must have the shape of X {tuple(X.shape)}, got {tuple(mask.shape)}")
    vals = _upward(spn, X, _region_arrays(spn, params, X.device, dtype), mask)
    return vals[len(spn.regions) - 1][:, 0]


def _as_data(spn: SPNStructure, X, device) -> torch.Tensor:
    """Return X as a torch tensor on `device`, after checking its shape and values."""
    Xn = np.asarray(X.cpu() if isinstance(X, torch.Tensor) else X)
    if Xn.ndim != 2 or Xn.shape[1] != spn.n_vars:
        raise ValueError(f"X must have shape (N, {spn.n_vars}), got {Xn.shape}")
    if Xn.size and not np.isin(Xn, (0, 1)).all():
        raise ValueError("X must hold only 0 and 1")
    return torch.as_tensor(Xn.astype(np.uint8), device=device or "cpu")


def random_params(spn: SPNStructure, hyper: Hyper, rng: np.random.Generator) -> Params:
    """Return parameters drawn from the prior: w_s ~ Dir(alpha_s), theta_{ld} ~ Beta(a_d, b_d)."""
    g = rng.gamma(hyper.alpha_edge)
    w = g / np.add.reduceat(g, spn.sum_ptr[:-1])[spn.edge_sum]
    th = rng.beta(hyper.a_var[spn.leaf_vars], hyper.b_var[spn.leaf_vars])
    return Params(w, th.clip(1e-12, 1 - 1e-12))


# ----------------------------------------------------------------------------------------------------
# Induced trees: state, counts, exact enumeration
# ----------------------------------------------------------------------------------------------------


@dataclass
class TreeState:
    """The latent trees Z (z[n, s] = chosen child of sum s, -1 if s is not in x_n's tree) and their counts."""

    z: np.ndarray  # (N, S) int32
    n_edge: np.ndarray  # (E,) n_{sc}
    n_sum: np.ndarray  # (S,) n_s
    ones: np.ndarray  # (slots,) k_{ld}
    m: np.ndarray  # (L,) m_l

    def copy(self) -> TreeState:
        """Return a deep copy."""
        return TreeState(self.z.copy(), self.n_edge.copy(), self.n_sum.copy(), self.ones.copy(), self.m.copy())

    def counts_copy(self) -> TreeState:
        """Return a copy of the counts only (z left empty): all that the predictive and the log joint read."""
        z = np.empty((0, self.z.shape[1]), np.int32)
        return TreeState(z, self.n_edge.copy(), self.n_sum.copy(), self.ones.copy(), self.m.copy())


def _tree_leaves(spn: SPNStructure, zrow: np.ndarray) -> list[int]:
    """Return the leaves of the induced tree encoded by one row of z."""
    leaves, stack = [], [0]
    S = spn.n_sums
    while stack:
        node = stack.pop()
        if node < S:
            p = spn.edge_prod[spn.sum_ptr[node] + zrow[node]]
            stack += [spn.prod_left[p], spn.prod_right[p]]
        else:
            leaves.append(node - S)
    return leaves


def counts_from_trees(spn: SPNStructure, X: np.ndarray, z: np.ndarray) -> TreeState:
    """Return the `TreeState` (with counts) of trees z for data X."""
    X = np.asarray(X, dtype=np.uint8)
    if z.shape != (X.shape[0], spn.n_sums):
        raise ValueError(f"z must have shape {(X.shape[0], spn.n_sums)}, got {z.shape}")
    rows, sums = np.nonzero(z >= 0)
    edges = spn.sum_ptr[sums] + z[rows, sums]
    n_edge = np.bincount(edges, minlength=spn.n_edges).astype(np.int64)
    n_sum = np.bincount(sums, minlength=spn.n_sums).astype(np.int64)
    # a product child of an edge that is a leaf is visited: collect leaf visits per datum
    prods = spn.edge_prod[edges]
    S = spn.n_sums
    ones = np.zeros(len(spn.leaf_vars), dtype=np.int64)
    m = np.zeros(spn.n_leaves, dtype=np.int64)
    for kid in (spn.prod_left[prods], spn.prod_right[prods]):
        is_leaf = kid >= S
        leaf, r = kid[is_leaf] - S, rows[is_leaf]
        np.add.at(m, leaf, 1)
        for off in range(int(np.diff(spn.leaf_ptr).max())):
            ok = spn.leaf_ptr[leaf] + off < spn.leaf_ptr[leaf + 1]
            slot = spn.leaf_ptr[leaf[ok]] + off
            np.add.at(ones, slot, X[r[ok], spn.leaf_vars[slot]])
    return TreeState(z.astype(np.int32), n_edge, n_sum, ones, m)


def enumerate_trees(spn: SPNStructure, limit: int | None = None) -> np.ndarray:
    """Return every induced tree as rows of sum choices (T x S, -1 where a sum is not in the tree)."""
    S = spn.n_sums

    def expand(nodes: tuple[int, ...], row: np.ndarray):
        sums = [v for v in nodes if v < S]
        if not sums:
            yield row
            return
        s, rest = sums[0], tuple(v for v in nodes if v != sums[0])
        for c in range(spn.sum_ptr[s + 1] - spn.sum_ptr[s]):
            p = spn.edge_prod[spn.sum_ptr[s] + c]
            new = row.copy()
            new[s] = c
            yield from expand(rest + (int(spn.prod_left[p]), int(spn.prod_right[p])), new)

    out = []
    for row in expand((0,), np.full(S, -1, dtype=np.int32)):
        out.append(row)
        if limit is not None and len(out) >= limit:
            break
    return np.array(out)


def log_joint(spn: SPNStructure, state: TreeState, hyper: Hyper) -> float:
    """Return the collapsed log p(X, Z | alpha, a, b): Dirichlet-multinomial times Beta-Bernoulli terms."""
    return float(_log_joint_counts(spn, state.n_edge, state.n_sum, state.ones, state.m, hyper))


def _log_joint_counts(spn, n_edge, n_sum, ones, m, hyper: Hyper):
    """Return the collapsed log joint for counts with a leading batch axis allowed (..., E) etc."""
    al, As = hyper.alpha_edge, hyper.alpha_sum(spn)
    # p(Z | alpha) = prod_s Gamma(alpha_s) / Gamma(alpha_s + n_s) prod_c Gamma(alpha_sc + n_sc) / Gamma(alpha_sc)
    lz = (gammaln(As) - gammaln(As + n_sum)).sum(-1) + (gammaln(al + n_edge) - gammaln(al)).sum(-1)
    a, b = hyper.a_var[spn.leaf_vars], hyper.b_var[spn.leaf_vars]
    mm = m[..., np.repeat(np.arange(spn.n_leaves), np.diff(spn.leaf_ptr))]
    # p(X | Z, a, b) = prod_{l,d} B(a_d + k_ld, b_d + m_l - k_ld) / B(a_d, b_d)
    lx = (
        gammaln(a + ones) + gammaln(b + mm - ones) - gammaln(a + b + mm) + gammaln(a + b) - gammaln(a) - gammaln(b)
    ).sum(-1)
    return lz + lx


def exact_posterior(spn: SPNStructure, X: np.ndarray, hyper: Hyper, max_states: int = 2_000_000):
    """Return (trees T x S, p over joint states T^N) of the collapsed posterior p(Z | X), by enumeration.

    Joint state index = ravel_multi_index((t_1, ..., t_N), (T,) * N).
    """
    X = np.asarray(X, dtype=np.uint8)
    trees = enumerate_trees(spn)
    T, N = len(trees), X.shape[0]
    if T**N > max_states:
        raise ValueError(f"{T}^{N} = {T**N} joint states exceed max_states={max_states}; use a tinier model")
    E_t = np.zeros((N, T, spn.n_edges), np.int64)
    S_t = np.zeros((N, T, spn.n_sums), np.int64)
    O_t = np.zeros((N, T, len(spn.leaf_vars)), np.int64)
    M_t = np.zeros((N, T, spn.n_leaves), np.int64)
    for n in range(N):
        for t in range(T):
            st = counts_from_trees(spn, X[n : n + 1], trees[t : t + 1])
            E_t[n, t], S_t[n, t], O_t[n, t], M_t[n, t] = st.n_edge, st.n_sum, st.ones, st.m
    idx = np.indices((T,) * N).reshape(N, -1)
    tot = lambda A: sum(A[n][idx[n]] for n in range(N))  # noqa: E731
    lj = _log_joint_counts(spn, tot(E_t), tot(S_t), tot(O_t), tot(M_t), hyper)
    p = np.exp(lj - lj.max())
    return trees, p / p.sum()


def tree_codes(spn: SPNStructure, trees: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Return the index in `trees` of each datum's tree in z (N,) (or samples x N for a 3-d z)."""
    base = int(np.diff(spn.sum_ptr).max()) + 1
    weights = base ** np.arange(spn.n_sums, dtype=np.int64)
    keys = (trees.astype(np.int64) + 1) @ weights
    order = np.argsort(keys)
    codes = (z.astype(np.int64) + 1) @ weights
    pos = np.searchsorted(keys[order], codes).clip(0, len(keys) - 1)
    if not np.array_equal(keys[order][pos], codes):
        raise ValueError("z contains a tree that is not in `trees`")
    return order[pos]


def _joint_empirical(spn: SPNStructure, trees: np.ndarray, z_samples: np.ndarray, n_states: int) -> np.ndarray:
    """Return the empirical distribution of the sampled joint Z (samples x N) over the enumerated joint states."""
    codes = tree_codes(spn, trees, z_samples)  # (samples, N)
    joint = np.ravel_multi_index(tuple(codes.T), (len(trees),) * codes.shape[1])
    return np.bincount(joint, minlength=n_states) / len(joint)


def joint_tv(spn: SPNStructure, trees: np.ndarray, p_exact: np.ndarray, z_samples: np.ndarray) -> float:
    """Return the total variation between the empirical joint distribution of sampled Z and p_exact."""
    return 0.5 * float(np.abs(_joint_empirical(spn, trees, z_samples, len(p_exact)) - p_exact).sum())


def iid_tv_floor(p_exact: np.ndarray, n_samples: int, rng: np.random.Generator, reps: int = 5) -> float:
    """Return the mean TV between p_exact and the empirical law of n_samples i.i.d. exact draws."""
    tvs = [0.5 * np.abs(rng.multinomial(n_samples, p_exact) / n_samples - p_exact).sum() for _ in range(reps)]
    return float(np.mean(tvs))


# ----------------------------------------------------------------------------------------------------
# Top-down sampler (the paper): compiled inner loop
# ----------------------------------------------------------------------------------------------------

_BUG_NONE, _BUG_ALWAYS_ACCEPT, _BUG_KEEP_OWN_COUNTS, _BUG_PRIOR_BELOW_ROOT = 0, 1, 2, 3
"""Injected bugs (ablation arms of experiment 1): none; accept every proposal (top-down) or sample children from
the weights alone (bottom-up); keep the datum's own counts while proposing; propose from the prior
alpha_sc / alpha_s, ignoring the counts, at every sum node below the root."""


@numba.njit(cache=True)
def _nb_seed(seed):
    np.random.seed(seed)  # noqa: NPY002 (numba supports only the legacy RNG)


@numba.njit(cache=True)
def _leaf_logpred(X, n, leaf, ones, m, leaf_ptr, leaf_vars, a_var, b_var):
    """Return log p(x_n,scope(l) | data in leaf l) under the Beta-Bernoulli posterior predictive."""
    # [bayesian-spn-thm-exact]: the leaf-acceptance ratio L(z*) / L(z) is a product of these factors
    out = 0.0
    for slot in range(leaf_ptr[leaf], leaf_ptr[leaf + 1]):
        d = leaf_vars[slot]
        a, b = a_var[d], b_var[d]
        # p(x_d = 1 | ...) = (k_ld + a_d) / (m_l + a_d + b_d)
        p1 = (ones[slot] + a) / (m[leaf] + a + b)
        out += np.log(p1) if X[n, d] == 1 else np.log(1.0 - p1)
    return out


@numba.njit(cache=True)
def _update_counts(
    X, n, sums, choices, n_sums_tree, leaves, n_leaves_tree, sign, n_edge, n_sum, ones, m, sum_ptr, leaf_ptr, leaf_vars
):
    for i in range(n_sums_tree):
        s = sums[i]
        n_edge[sum_ptr[s] + choices[i]] += sign
        n_sum[s] += sign
    for i in range(n_leaves_tree):
        leaf = leaves[i]
        m[leaf] += sign
        for slot in range(leaf_ptr[leaf], leaf_ptr[leaf + 1]):
            ones[slot] += sign * X[n, leaf_vars[slot]]


@numba.njit(cache=True)
def _top_down_kernel(
    X,
    z,
    n_edge,
    n_sum,
    ones,
    m,
    sum_ptr,
    edge_prod,
    prod_left,
    prod_right,
    leaf_ptr,
    leaf_vars,
    alpha_edge,
    alpha_sum,
    a_var,
    b_var,
    n_sweeps,
    bug,
):
    """Run n_sweeps MH-within-Gibbs sweeps in place; return (accepted, proposals, edge scans).

    An edge scan is one sum-node edge examined (including every child scanned by the proposal's linear
    search), one product-node child edge followed, or one leaf variable read or updated.
    """
    N, S = z.shape
    cap = S + leaf_ptr.shape[0]
    old_s = np.empty(cap, np.int64)
    old_c = np.empty(cap, np.int64)
    old_l = np.empty(cap, np.int64)
    new_s = np.empty(cap, np.int64)
    new_c = np.empty(cap, np.int64)
    new_l = np.empty(cap, np.int64)
    stack = np.empty(cap, np.int64)
    accepted = 0
    visits = 0
    for _sweep in range(n_sweeps):
        for n in np.random.permutation(N):  # noqa: NPY002 (numba supports only the legacy RNG)
            # current tree z_n: collect its sums (with choices) and leaves
            ns_old, nl_old, top = 0, 0, 1
            stack[0] = 0
            while top > 0:
                top -= 1
                node = stack[top]
                if node < S:
                    c = z[n, node]
                    old_s[ns_old] = node
                    old_c[ns_old] = c
                    ns_old += 1
                    p = edge_prod[sum_ptr[node] + c]
                    visits += 3  # the chosen sum edge and the product's two child edges
                    stack[top] = prod_left[p]
                    stack[top + 1] = prod_right[p]
                    top += 2
                else:
                    old_l[nl_old] = node - S
                    nl_old += 1
            # remove the datum's own counts: the conditioning set is Z without z_n
            if bug != 2:
                _update_counts(
                    X, n, old_s, old_c, ns_old, old_l, nl_old, -1, n_edge, n_sum, ones, m, sum_ptr, leaf_ptr, leaf_vars
                )
            # network proposal: z*_n ~ p(z_n | Z_{-n}, alpha), top-down, one child per visited sum:
            # p(c | s) = (n_sc^{-n} + alpha_sc) / (n_s^{-n} + alpha_s)
            ns_new, nl_new, top = 0, 0, 1
            stack[0] = 0
            while top > 0:
                top -= 1
                node = stack[top]
                if node < S:
                    # bug 3 drops the counts below the root: p(c | s) = alpha_sc / alpha_s there
                    w_n = 0.0 if (bug == 3 and node > 0) else 1.0
                    u = np.random.random() * (w_n * n_sum[node] + alpha_sum[node])  # noqa: NPY002 (numba supports only the legacy RNG)
                    e = sum_ptr[node]
                    acc = w_n * n_edge[e] + alpha_edge[e]
                    while acc <= u and e < sum_ptr[node + 1] - 1:
                        e += 1
                        acc += w_n * n_edge[e] + alpha_edge[e]
                    new_s[ns_new] = node
                    new_c[ns_new] = e - sum_ptr[node]
                    ns_new += 1
                    p = edge_prod[e]
                    visits += e - sum_ptr[node] + 1 + 2  # the C_s scan up to the chosen edge, then 2 child edges
                    stack[top] = prod_left[p]
                    stack[top + 1] = prod_right[p]
                    top += 2
                else:
                    new_l[nl_new] = node - S
                    nl_new += 1
            # leaf acceptance: min(1, prod_{l in z*} p(x_n | X_l^{-n}) / prod_{l in z} p(x_n | X_l^{-n}))
            log_r = 0.0
            for i in range(nl_new):
                log_r += _leaf_logpred(X, n, new_l[i], ones, m, leaf_ptr, leaf_vars, a_var, b_var)
                visits += leaf_ptr[new_l[i] + 1] - leaf_ptr[new_l[i]]
            for i in range(nl_old):
                log_r -= _leaf_logpred(X, n, old_l[i], ones, m, leaf_ptr, leaf_vars, a_var, b_var)
                visits += leaf_ptr[old_l[i] + 1] - leaf_ptr[old_l[i]]
            # removing and adding back the counts: one edge per sum node and every leaf variable, twice
            visits += ns_old + 2 * X.shape[1]
            take = bug == 1 or np.log(np.random.random()) < log_r  # noqa: NPY002 (numba supports only the legacy RNG)
            if bug == 2:
                _update_counts(
                    X, n, old_s, old_c, ns_old, old_l, nl_old, -1, n_edge, n_sum, ones, m, sum_ptr, leaf_ptr, leaf_vars
                )
            if take:
                accepted += 1
                for i in range(ns_old):
                    z[n, old_s[i]] = -1
                for i in range(ns_new):
                    z[n, new_s[i]] = new_c[i]
                _update_counts(
                    X, n, new_s, new_c, ns_new, new_l, nl_new, 1, n_edge, n_sum, ones, m, sum_ptr, leaf_ptr, leaf_vars
                )
                visits += ns_new
            else:
                _update_counts(
                    X, n, old_s, old_c, ns_old, old_l, nl_old, 1, n_edge, n_sum, ones, m, sum_ptr, leaf_ptr, leaf_vars
                )
                visits += ns_old
    return accepted, n_sweeps * N, visits


@numba.njit(cache=True)
def _top_down_trace(
    X, z, n_edge, n_sum, ones, m, sum_ptr, edge_prod, prod_left, prod_right, leaf_ptr, leaf_vars, alpha_edge,
    alpha_sum, a_var, b_var, n_sweeps, bug, out
):  # fmt: skip
    """Run n_sweeps single sweeps, copying the trees z into out[i] after sweep i; return the accepted count."""
    accepted = 0
    for i in range(n_sweeps):
        acc, _, _ = _top_down_kernel(
            X, z, n_edge, n_sum, ones, m, sum_ptr, edge_prod, prod_left, prod_right, leaf_ptr, leaf_vars,
            alpha_edge, alpha_sum, a_var, b_var, 1, bug,
        )  # fmt: skip
        accepted += acc
        out[i] = z
    return accepted


@dataclass
class SweepStats:
    """What a run of sweeps did: acceptance rate, edge scans (`visits_per_sweep`) and seconds per sweep.

    Seconds are CPU seconds of the calling thread (both samplers run on one thread), or wall-clock on a GPU.
    """

    sweeps: int
    acceptance: float
    visits_per_sweep: float
    seconds_per_sweep: float


def _check_state(spn: SPNStructure, X: np.ndarray, state: TreeState) -> np.ndarray:
    X = np.ascontiguousarray(np.asarray(X, dtype=np.uint8))
    if X.ndim != 2 or X.shape[1] != spn.n_vars or state.z.shape != (X.shape[0], spn.n_sums):
        raise ValueError(f"X must be (N, {spn.n_vars}) and state.z (N, {spn.n_sums}); got {X.shape}, {state.z.shape}")
    return X


def _run_top_down(spn, X, state, hyper, n_sweeps, seed, bug) -> SweepStats:
    X = _check_state(spn, X, state)
    _nb_seed(int(seed) % (2**31))
    t0 = time.thread_time()  # CPU seconds of this thread: robust to other processes on a shared machine
    acc, props, visits = _top_down_kernel(
        X,
        state.z,
        state.n_edge,
        state.n_sum,
        state.ones,
        state.m,
        spn.sum_ptr,
        spn.edge_prod,
        spn.prod_left,
        spn.prod_right,
        spn.leaf_ptr,
        spn.leaf_vars,
        hyper.alpha_edge,
        hyper.alpha_sum(spn),
        hyper.a_var,
        hyper.b_var,
        int(n_sweeps),
        bug,
    )
    dt = time.thread_time() - t0
    return SweepStats(n_sweeps, acc / max(props, 1), visits / max(n_sweeps, 1), dt / max(n_sweeps, 1))


def top_down_gibbs(
    spn: SPNStructure, X: np.ndarray, state: TreeState, hyper: Hyper, n_sweeps: int = 1, seed: int = 0
) -> SweepStats:
    """Run the paper's top-down MH-within-Gibbs sweeps on `state` in place; return their `SweepStats`."""
    return _run_top_down(spn, X, state, hyper, n_sweeps, seed, _BUG_NONE)


def warmup_top_down(spn: SPNStructure, X: np.ndarray, hyper: Hyper) -> None:
    """Compile the numba kernel (a no-op after the first call in a process)."""
    st = init_state(spn, X[:2], seed=0)
    top_down_gibbs(spn, X[:2], st, hyper, 1)


@numba.njit(cache=True)
def _uniform_trees(N, S, sum_ptr, edge_prod, prod_left, prod_right, z):
    stack = np.empty(S + 2 * S + 2, np.int64)
    for n in range(N):
        top = 1
        stack[0] = 0
        while top > 0:
            top -= 1
            node = stack[top]
            if node < S:
                c = np.random.randint(0, sum_ptr[node + 1] - sum_ptr[node])  # noqa: NPY002 (numba supports only the legacy RNG)
                z[n, node] = c
                p = edge_prod[sum_ptr[node] + c]
                stack[top] = prod_left[p]
                stack[top + 1] = prod_right[p]
                top += 2


def init_state(spn: SPNStructure, X: np.ndarray, seed: int = 0) -> TreeState:
    """Return a starting state: each datum's tree drawn uniformly (one uniform child per visited sum)."""
    X = np.asarray(X, dtype=np.uint8)
    z = np.full((X.shape[0], spn.n_sums), -1, dtype=np.int32)
    _nb_seed(int(seed) % (2**31))
    _uniform_trees(X.shape[0], spn.n_sums, spn.sum_ptr, spn.edge_prod, spn.prod_left, spn.prod_right, z)
    return counts_from_trees(spn, X, z)


# ----------------------------------------------------------------------------------------------------
# Bottom-up Gibbs (baseline, Trapp et al. 2019): torch, vectorised over data and nodes
# ----------------------------------------------------------------------------------------------------


def sample_params(spn: SPNStructure, state: TreeState, hyper: Hyper, gen: torch.Generator) -> Params:
    """Return W ~ Dir(alpha + n_s.) and theta ~ Beta(a + k, b + m - k): the conjugate Gibbs steps."""
    conc = torch.as_tensor(hyper.alpha_edge + state.n_edge, dtype=torch.float64)
    g = torch._standard_gamma(conc, generator=gen).clamp_min(1e-300)
    tot = torch.zeros(spn.n_sums, dtype=torch.float64).index_add_(0, torch.as_tensor(spn.edge_sum), g)
    w = (g / tot[torch.as_tensor(spn.edge_sum)]).numpy()
    a = hyper.a_var[spn.leaf_vars] + state.ones
    b = hyper.b_var[spn.leaf_vars] + state.m[np.repeat(np.arange(spn.n_leaves), np.diff(spn.leaf_ptr))] - state.ones
    ga = torch._standard_gamma(torch.as_tensor(a, dtype=torch.float64), generator=gen)
    gb = torch._standard_gamma(torch.as_tensor(b, dtype=torch.float64), generator=gen)
    th = (ga / (ga + gb)).clamp(1e-12, 1 - 1e-12).numpy()
    return Params(w, th)


def _downward(
    spn: SPNStructure,
    X: torch.Tensor,
    values: dict,
    arrays: dict,
    gen: torch.Generator,
    bug: int = 0,
) -> tuple[np.ndarray, int]:
    """Return (z, scans): each datum's tree (N x S) sampled top-down from p(c | s, x) ∝ w_sc S_c(x).

    `scans` counts the edge scans of the pass: for each datum routed to a region, its C sum edges and the
    two child edges of each of the C products recomputed there.
    """
    N = X.shape[0]
    dev = X.device
    z = torch.full((N, spn.n_sums), -1, dtype=torch.int32, device=dev)
    routes = {len(spn.regions) - 1: (torch.arange(N, device=dev), torch.zeros(N, dtype=torch.long, device=dev))}
    scans = 0
    for r in range(len(spn.regions) - 1, -1, -1):
        reg = spn.regions[r]
        if reg.kind == "leaf" or r not in routes:
            continue
        rows, k = routes.pop(r)
        if len(rows) == 0:
            continue
        # p(z_ns = c | w, theta, x_n) ∝ w_sc S_c(x_n): recomputed only for the data routed here
        logits = torch.log(arrays[r][k])
        scans += 3 * len(rows) * reg.n_children
        if bug != _BUG_ALWAYS_ACCEPT:
            logits = logits + _products(spn, reg, values, rows)
        # inverse CDF: one uniform per datum, searched in the cumulative conditional
        cdf = torch.softmax(logits, 1).cumsum(1)
        u = torch.rand((len(rows), 1), generator=gen, dtype=cdf.dtype, device="cpu").to(dev)
        c = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp_max(reg.n_children - 1).squeeze(1)
        z[rows, reg.first + k] = c.to(torch.int32)
        off = 0
        for a, b in reg.parts:
            kb = spn.regions[b].n_nodes
            width = spn.regions[a].n_nodes * kb
            sel = (c >= off) & (c < off + width)
            cc = c[sel] - off
            routes[a] = (rows[sel], cc // kb)
            routes[b] = (rows[sel], cc % kb)
            off += width
    return z.cpu().numpy(), scans


@numba.njit(cache=True, fastmath=True)
def _bottom_up_kernel(
    X, z, n_edge, n_sum, ones, m, sum_ptr, edge_prod, prod_left, prod_right, leaf_ptr, leaf_vars, regions,
    leaf_regions, alpha_edge, a_var, b_var, n_sweeps, bug, out
):  # fmt: skip
    """Run n_sweeps bottom-up Gibbs sweeps in place, one datum at a time; return the edge scans.

    Each sweep draws W and Theta from their conditionals, then for every datum evaluates every node
    (upward pass) and draws the datum's tree top-down by inverse CDF (downward pass). Values are kept
    as S_v(x_n) = ex[v] exp(off[v]) with one offset per region, so that a product's value is the product
    of its children's (no exp per product) and a region's sums are dot products with its weights.
    When out has n_sweeps rows, out[i] receives z after sweep i.
    """
    N, S = z.shape
    E, P, L, n_slots = alpha_edge.shape[0], prod_left.shape[0], leaf_ptr.shape[0] - 1, leaf_vars.shape[0]
    w = np.empty(E)
    lt = np.empty(n_slots)
    l1t = np.empty(n_slots)
    B = 16  # data per block: each weight row is reused by B data while it is in cache
    ex = np.empty((B, S + L))  # S_v(x_n) / exp(off[v]): sums [0, S), leaves S + [0, L)
    off = np.empty((B, S + L))
    dot = np.empty((B, S))  # sum_c w_sc pexp_c: the normaliser of the downward step at s
    pexp = np.empty((B, P))  # S_p(x_n) / exp(region offset)
    lv = np.empty(L)
    stack = np.empty(S + L + 2, np.int64)
    visits = 0
    for sweep in range(n_sweeps):
        # w_s ~ Dir(alpha_s + n_s.), by normalised Gamma draws
        for s in range(S):
            tot = 0.0
            for e in range(sum_ptr[s], sum_ptr[s + 1]):
                w[e] = max(np.random.gamma(alpha_edge[e] + n_edge[e], 1.0), 1e-300)  # noqa: NPY002 (numba supports only the legacy RNG)
                tot += w[e]
            for e in range(sum_ptr[s], sum_ptr[s + 1]):
                w[e] /= tot
        # theta_ld ~ Beta(a_d + k_ld, b_d + m_l - k_ld)
        for leaf in range(L):
            for slot in range(leaf_ptr[leaf], leaf_ptr[leaf + 1]):
                d = leaf_vars[slot]
                th = np.random.beta(a_var[d] + ones[slot], b_var[d] + m[leaf] - ones[slot])  # noqa: NPY002 (numba supports only the legacy RNG)
                th = min(max(th, 1e-12), 1.0 - 1e-12)
                lt[slot] = np.log(th)
                l1t[slot] = np.log1p(-th)
        n_edge[:] = 0
        n_sum[:] = 0
        ones[:] = 0
        m[:] = 0
        for n0 in range(0, N, B):
            nb = min(B, N - n0)
            # upward pass, leaves: log S_l(x_n) = sum_d x_d log theta_ld + (1 - x_d) log(1 - theta_ld)
            for b in range(nb):
                for r in range(leaf_regions.shape[0]):
                    l0, nl = leaf_regions[r, 0], leaf_regions[r, 1]
                    top = -np.inf
                    for leaf in range(l0, l0 + nl):
                        v = 0.0
                        for slot in range(leaf_ptr[leaf], leaf_ptr[leaf + 1]):
                            v += lt[slot] if X[n0 + b, leaf_vars[slot]] == 1 else l1t[slot]
                        lv[leaf] = v
                        top = max(top, v)
                    for leaf in range(l0, l0 + nl):
                        ex[b, S + leaf] = np.exp(lv[leaf] - top)
                        off[b, S + leaf] = top
            # sum regions, children first: S_p = S_left S_right, S_s = sum_c w_sc S_c
            for r in range(regions.shape[0]):
                s0, ns, p0, C = regions[r, 0], regions[r, 1], regions[r, 2], regions[r, 3]
                for b in range(nb):
                    exb, offb, pb = ex[b], off[b], pexp[b]
                    top = -np.inf
                    for p in range(p0, p0 + C):
                        pb[p] = offb[prod_left[p]] + offb[prod_right[p]]  # the product's offset, for now
                        top = max(top, pb[p])
                    last, f = np.inf, 1.0
                    for p in range(p0, p0 + C):
                        if pb[p] != last:  # the offset changes only between partitions: one exp per partition
                            last, f = pb[p], np.exp(pb[p] - top)
                        pb[p] = exb[prod_left[p]] * exb[prod_right[p]] * f
                    offb[s0] = top  # the region's offset, before normalising the sums
                for k in range(ns):
                    wk = w[sum_ptr[s0 + k] : sum_ptr[s0 + k] + C]  # slices let LLVM vectorise the dot product
                    for b in range(nb):
                        pb = pexp[b, p0 : p0 + C]
                        acc = 0.0
                        for c in range(C):
                            acc += wk[c] * pb[c]
                        dot[b, s0 + k] = max(acc, 1e-300)
                for b in range(nb):
                    dmax = 1e-300
                    for k in range(ns):
                        dmax = max(dmax, dot[b, s0 + k])
                    o = off[b, s0] + np.log(dmax)
                    for k in range(ns):
                        ex[b, s0 + k] = dot[b, s0 + k] / dmax
                        off[b, s0 + k] = o
            for b in range(nb):
                n = n0 + b
                # downward pass: z_n top-down with p(c | s, x_n) ∝ w_sc S_c(x_n), one uniform per sum (inverse CDF)
                for s in range(S):
                    z[n, s] = -1
                ns_tree, height = 0, 1
                stack[0] = 0
                while height > 0:
                    height -= 1
                    node = stack[height]
                    if node < S:
                        e0, e1 = sum_ptr[node], sum_ptr[node + 1]
                        p0 = edge_prod[e0]
                        e = e0
                        if bug == 1:  # injected bug: children drawn from the weights alone, ignoring x_n
                            u = np.random.random()  # noqa: NPY002 (numba supports only the legacy RNG)
                            acc = w[e]
                            while acc <= u and e < e1 - 1:
                                e += 1
                                acc += w[e]
                        else:
                            u = np.random.random() * dot[b, node]  # noqa: NPY002 (numba supports only the legacy RNG)
                            acc = w[e] * pexp[b, p0]
                            while acc <= u and e < e1 - 1:
                                e += 1
                                acc += w[e] * pexp[b, p0 + e - e0]
                        z[n, node] = e - e0
                        n_edge[e] += 1
                        n_sum[node] += 1
                        ns_tree += 1
                        visits += e - e0 + 1 + 2  # the scan up to the chosen edge, then the product's two child edges
                        p = edge_prod[e]
                        stack[height] = prod_left[p]
                        stack[height + 1] = prod_right[p]
                        height += 2
                    else:
                        leaf = node - S
                        m[leaf] += 1
                        for slot in range(leaf_ptr[leaf], leaf_ptr[leaf + 1]):
                            ones[slot] += X[n, leaf_vars[slot]]
                # upward: every sum edge, both child edges of every product, every leaf variable; + count updates
                visits += E + 2 * P + n_slots + ns_tree + X.shape[1]
        if out.shape[0] == n_sweeps:
            out[sweep] = z
    return visits


def _run_bottom_up_numba(spn, X, state, hyper, n_sweeps, seed, bug, out=None) -> SweepStats:
    X = _check_state(spn, X, state)
    if out is None:
        out = np.empty((0, *state.z.shape), np.int32)
    _nb_seed(int(seed) % (2**31))
    t0 = time.thread_time()
    visits = _bottom_up_kernel(
        X,
        state.z,
        state.n_edge,
        state.n_sum,
        state.ones,
        state.m,
        spn.sum_ptr,
        spn.edge_prod,
        spn.prod_left,
        spn.prod_right,
        spn.leaf_ptr,
        spn.leaf_vars,
        spn.sum_regions(),
        spn.leaf_regions(),
        hyper.alpha_edge,
        hyper.a_var,
        hyper.b_var,
        int(n_sweeps),
        bug,
        out,
    )
    dt = time.thread_time() - t0
    return SweepStats(n_sweeps, 1.0, visits / max(n_sweeps, 1), dt / max(n_sweeps, 1))


def bottom_up_gibbs(
    spn: SPNStructure,
    X: np.ndarray,
    state: TreeState,
    hyper: Hyper,
    n_sweeps: int = 1,
    seed: int = 0,
    *,
    impl: str = "numba",
    device=None,
    dtype=torch.float32,
    _bug: int = 0,
) -> tuple[TreeState, SweepStats]:
    """Run bottom-up Gibbs sweeps (W, theta | Z; then Z | W, theta, X for all data); return (state, stats).

    Every sweep evaluates every node of the network for every datum (the upward pass), then samples each
    datum's tree top-down from the exact conditional given the explicit parameters. `impl="numba"`: a
    compiled float64 loop over data, like the top-down kernel (updates `state` in place and returns it);
    `impl="torch"`: vectorised over data in `dtype` on `device` (a GPU where there is one), returns a new state.
    """
    if impl == "numba":
        return state, _run_bottom_up_numba(spn, X, state, hyper, n_sweeps, seed, _bug)
    if impl != "torch":
        raise ValueError(f"impl must be 'numba' or 'torch', got {impl!r}")
    Xn = _check_state(spn, X, state)
    Xt = torch.as_tensor(Xn, device=device or "cpu")
    gen = torch.Generator().manual_seed(int(seed))
    # CPU: this thread's CPU seconds (torch runs on it with one thread); GPU: wall-clock after a synchronise
    clock = time.perf_counter if Xt.device.type == "cuda" else time.thread_time
    t0 = clock()
    # upward pass, per datum: every sum edge, both child edges of every product, every leaf variable
    up = spn.n_edges + 2 * spn.n_products + len(spn.leaf_vars)
    scans = 0
    for _ in range(n_sweeps):
        params = sample_params(spn, state, hyper, gen)
        arrays = _region_arrays(spn, params, Xt.device, dtype)
        values = _upward(spn, Xt, arrays)
        z, down = _downward(spn, Xt, values, arrays, gen, bug=_bug)
        state = counts_from_trees(spn, Xn, z)
        # + the downward pass (measured) + adding the new trees' counts (one edge per sum, every variable)
        scans += Xn.shape[0] * up + down + int((z >= 0).sum()) + Xn.size
    if Xt.device.type == "cuda":
        torch.cuda.synchronize()
    dt = clock() - t0
    return state, SweepStats(n_sweeps, 1.0, scans / max(n_sweeps, 1), dt / max(n_sweeps, 1))


# ----------------------------------------------------------------------------------------------------
# Prediction and hyperparameter tuning
# ----------------------------------------------------------------------------------------------------


def posterior_mean_params(spn: SPNStructure, state: TreeState, hyper: Hyper) -> Params:
    """Return E[W | Z] = (n_sc + alpha_sc)/(n_s + alpha_s) and E[theta | Z, X] = (k + a)/(m + a + b)."""
    w = (state.n_edge + hyper.alpha_edge) / (state.n_sum + hyper.alpha_sum(spn))[spn.edge_sum]
    a, b = hyper.a_var[spn.leaf_vars], hyper.b_var[spn.leaf_vars]
    mm = state.m[np.repeat(np.arange(spn.n_leaves), np.diff(spn.leaf_ptr))]
    return Params(w, ((state.ones + a) / (mm + a + b)).clip(1e-12, 1 - 1e-12))


def predictive_log_likelihood(
    spn: SPNStructure, states: list[TreeState], hyper: Hyper, X_test, *, device=None
) -> float:
    """Return the mean over test rows of log (1/T) sum_t p(x | Z_t, X): the posterior predictive."""
    lls = torch.stack(
        [log_likelihood(spn, posterior_mean_params(spn, st, hyper), X_test, device=device) for st in states]
    )
    return float((torch.logsumexp(lls, 0) - np.log(len(states))).mean())


def independent_bernoulli_ll(X_train: np.ndarray, X_test: np.ndarray, a: float = 0.5) -> float:
    """Return the mean test log-likelihood of independent Bernoullis with posterior-mean Beta(a, a) estimates."""
    p = (X_train.sum(0) + a) / (len(X_train) + 2 * a)
    return float((X_test * np.log(p) + (1 - X_test) * np.log1p(-p)).sum(1).mean())


def _polya_mle(
    k: np.ndarray, m: np.ndarray, a: np.ndarray, b: np.ndarray, valid: np.ndarray, iters: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Return (a, b) per row maximising sum_l valid_l [log B(a + k_l, b + m_l - k_l) - log B(a, b)].

    Rows are independent; all are optimised at once by L-BFGS-B in log space with the digamma gradient.
    """
    R = len(a)

    def nll(v):
        aa, bb = np.exp(v[:R])[:, None], np.exp(v[R:])[:, None]
        f = (valid * (betaln(aa + k, bb + m - k) - betaln(aa, bb))).sum()
        dab = digamma(aa + bb + m) - digamma(aa + bb)
        ga = (valid * (digamma(aa + k) - digamma(aa) - dab)).sum(1) * aa[:, 0]
        gb = (valid * (digamma(bb + m - k) - digamma(bb) - dab)).sum(1) * bb[:, 0]
        return -f, -np.concatenate([ga, gb])

    v0 = np.log(np.concatenate([a, b]))
    res = minimize(
        nll,
        v0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(np.log(1e-3), np.log(1e3))] * (2 * R),
        options={"maxiter": iters, "gtol": 1e-9},
    )
    return np.exp(res.x[:R]), np.exp(res.x[R:])


def tune_hyperparameters(
    spn: SPNStructure,
    state: TreeState,
    hyper: Hyper,
    *,
    max_leaves_per_dim: int = 64,
    seed: int = 0,
    tune_alpha: bool = True,
) -> Hyper:
    """Return empirical-Bayes hyperparameters: (a_d, b_d) per variable and one alpha, maximising p(X, Z | .).

    Leaf hyperparameters are tied per dimension d, and each is fitted on a subsample of at most
    `max_leaves_per_dim` of the leaves that cover d (cost O(D), not O(#leaves)); alpha is one per-child
    Dirichlet concentration shared by every sum node.
    """
    rng = np.random.default_rng(seed)
    leaf_of_slot = np.repeat(np.arange(spn.n_leaves), np.diff(spn.leaf_ptr))
    D = spn.n_vars
    k = np.zeros((D, max_leaves_per_dim))
    mm = np.zeros((D, max_leaves_per_dim))
    valid = np.zeros((D, max_leaves_per_dim))
    by_var, bounds = spn.slots_by_var()
    for d in range(D):
        slots = by_var[bounds[d] : bounds[d + 1]]
        slots = slots[state.m[leaf_of_slot[slots]] > 0]
        if len(slots) > max_leaves_per_dim:
            slots = rng.choice(slots, max_leaves_per_dim, replace=False)
        k[d, : len(slots)] = state.ones[slots]
        mm[d, : len(slots)] = state.m[leaf_of_slot[slots]]
        valid[d, : len(slots)] = 1.0
    a, b = _polya_mle(k, mm, hyper.a_var.copy(), hyper.b_var.copy(), valid)
    alpha_edge = hyper.alpha_edge
    if tune_alpha:
        used = state.n_sum > 0
        C = np.diff(spn.sum_ptr)
        # the objective depends on counts only through their histogram: digamma on unique values
        ne, we = np.unique(state.n_edge[used[spn.edge_sum]], return_counts=True)
        cs, ws = np.unique(np.stack([C[used], state.n_sum[used]], 1), axis=0, return_counts=True)
        al = float(hyper.alpha_edge.mean())
        for _ in range(50):
            # Minka: alpha <- alpha sum_sc [psi(n_sc + alpha) - psi(alpha)]
            #                 / sum_s C_s [psi(n_s + C_s alpha) - psi(C_s alpha)]
            num = (we * (digamma(ne + al) - digamma(al))).sum()
            den = (ws * cs[:, 0] * (digamma(cs[:, 1] + cs[:, 0] * al) - digamma(cs[:, 0] * al))).sum()
            al = float(np.clip(al * num / max(den, 1e-300), 1e-4, 1e2))
        alpha_edge = np.full(spn.n_edges, al)
    return Hyper(alpha_edge, a, b)


# ----------------------------------------------------------------------------------------------------
# Experiment configs and drivers
# ----------------------------------------------------------------------------------------------------


TINY_DATA = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=np.uint8)
"""The data of the one-sum model of experiment 1 (D = 3, N = 4)."""

INTERNAL_DATA = np.array([[1, 1, 0, 1], [1, 1, 0, 0]], dtype=np.uint8)
"""The data of the internal-sums model of experiment 1 (D = 4, N = 2)."""

EXACT_MODELS = {
    # name: (n_vars, depth, repetitions J, K_sum, K_leaf, data)
    "one sum node": (3, 1, 2, 1, 1, TINY_DATA),
    "internal sums": (4, 2, 2, 2, 2, INTERNAL_DATA),
}
"""The two exact-enumeration models: a root over 2 products (16 joint states), and 9 sum nodes of which a tree
visits 3 (the root over 8 products, two internal sums over 4 each: 128 trees, 128^2 = 16 384 joint states)."""

ARMS = {
    # arm: (sampler, injected bug)
    "top-down": ("top-down", _BUG_NONE),
    "bottom-up": ("bottom-up", _BUG_NONE),
    "top-down, always accept": ("top-down", _BUG_ALWAYS_ACCEPT),
    "top-down, own counts kept": ("top-down", _BUG_KEEP_OWN_COUNTS),
    "top-down, counts ignored below the root": ("top-down", _BUG_PRIOR_BELOW_ROOT),
}
"""The arms of experiment 1: both samplers, and three one-line bugs of the top-down sampler."""

PUBLISHED_LEARNSPN = {
    "nltcs": -6.11,
    "plants": -12.98,
    "jester": -53.48,
    "baudio": -40.50,
    "bnetflix": -57.33,
    "accidents": -30.04,
    "pumsb_star": -24.78,
    "dna": -82.52,
    "bbc": -250.69,
}
"""Test log-likelihood per sample of LearnSPN, Gens & Domingos (2013), Table 2, as re-quoted in later SPN papers.

Not checked against the original table (the book's search corpus has only the start of that paper); the
chapter says so where it uses them.
"""


@dataclass(frozen=True)
class CorrectnessConfig(Config):
    """Experiment 1: both samplers and three bugs against exact enumeration on the two `EXACT_MODELS`."""

    alpha: float = 2.0  # Dirichlet alpha per child, one-sum model
    alpha_internal: float = 0.2  # ... internal-sums model (small, so that the counts matter)
    sweeps: int = 20_000  # sweeps per arm, one-sum model
    sweeps_internal: int = 50_000  # ... internal-sums model (16 384 joint states)
    burn_in: int = 100
    PRESETS = {"quick": {}, "full": {"sweeps": 100_000, "sweeps_internal": 400_000}}


@dataclass(frozen=True)
class SpeedConfig(Config):
    """Experiment 2: per-sweep edge scans and CPU seconds of both samplers as K_sum = K_leaf doubles."""

    dataset: str = "nltcs"
    n_data: int = 2000  # rows of the training set used (both samplers cost O(N) per sweep)
    sizes: tuple[int, ...] = (5, 10, 20, 40)
    depth: int = 3
    n_repetitions: int = 4
    sweeps: int = 1  # bottom-up sweeps timed
    td_sweeps: int = 10  # top-down sweeps timed
    torch_max_nodes: int = 15_000  # the vectorised torch bottom-up is also timed up to this size (K = 20)
    PRESETS = {"quick": {}, "full": {"n_data": 8000, "sweeps": 2, "torch_max_nodes": 50_000}}


@dataclass(frozen=True)
class PredictiveConfig(Config):
    """Experiment 3: test log-likelihood of both samplers at several equal-CPU-time horizons and equal sweeps."""

    datasets: tuple[str, ...] = ("nltcs",)
    depth: int = 3
    n_repetitions: int = 4
    n_sums: int = 10
    n_leaves: int = 10
    alpha: float = 1.0
    n_train: int | None = 8000  # first rows of each training set used (None: all)
    horizons: tuple[float, ...] = (0.75, 1.5, 3.0, 6.0)  # CPU seconds of each sampler
    n_keep: int = 5  # last posterior samples averaged in the predictive
    PRESETS = {
        "quick": {},
        "full": {
            "datasets": ("nltcs", "plants", "jester", "baudio", "dna"),
            "n_train": None,
            "horizons": (2.0, 8.0, 32.0),
        },
    }


@dataclass(frozen=True)
class TuningConfig(Config):
    """Experiment 4: empirical-Bayes tuning against fixed hyperparameters (top-down sampler)."""

    dataset: str = "nltcs"
    depth: int = 3
    n_repetitions: int = 4
    n_sums: int = 10
    n_leaves: int = 10
    n_train: int | None = 8000  # first rows of the training set used (None: all)
    sweeps: int = 40
    tune_every: int = 5
    n_keep: int = 5
    PRESETS = {"quick": {}, "full": {"n_sums": 20, "n_leaves": 20, "n_train": None, "sweeps": 100}}


def trace_trees(
    kind: str, spn: SPNStructure, X: np.ndarray, hyper: Hyper, sweeps: int, seed: int = 0, bug: int = _BUG_NONE
) -> tuple[np.ndarray, float]:
    """Return (z after every sweep (sweeps x N x S), acceptance) of a chain from `init_state`, compiled throughout."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.uint8))
    st = init_state(spn, X, seed=seed)
    out = np.empty((sweeps, *st.z.shape), np.int32)
    if kind == "bottom-up":
        _run_bottom_up_numba(spn, X, st, hyper, sweeps, seed, bug, out)
        return out, 1.0
    if kind != "top-down":
        raise ValueError(f"kind must be 'top-down' or 'bottom-up', got {kind!r}")
    _nb_seed(int(seed) % (2**31))
    accepted = _top_down_trace(
        X, st.z, st.n_edge, st.n_sum, st.ones, st.m, spn.sum_ptr, spn.edge_prod, spn.prod_left, spn.prod_right,
        spn.leaf_ptr, spn.leaf_vars, hyper.alpha_edge, hyper.alpha_sum(spn), hyper.a_var, hyper.b_var, int(sweeps),
        bug, out,
    )  # fmt: skip
    return out, accepted / max(sweeps * len(X), 1)


def correctness_experiment(cfg: CorrectnessConfig, seed: int = 0) -> dict:
    """Return, per exact model, the exact joint posterior and every arm's visit frequencies, TV and i.i.d. floor."""
    out = {}
    for model, (d, depth, J, K, KL, X) in EXACT_MODELS.items():
        spn = build_rat_spn(d, depth, J, K, KL, seed=0)
        internal = model == "internal sums"
        hyper = Hyper.fixed(spn, cfg.alpha_internal if internal else cfg.alpha)
        sweeps = cfg.sweeps_internal if internal else cfg.sweeps
        trees, p = exact_posterior(spn, X, hyper)
        res = {"p_exact": p, "n_states": len(p), "n_sums": spn.n_sums, "n_trees": len(trees), "n_data": len(X)}
        for k, (arm, (kind, bug)) in enumerate(ARMS.items()):
            zs, acc = trace_trees(kind, spn, X, hyper, sweeps, seed=seed * 1_000_003 + k, bug=bug)
            emp = _joint_empirical(spn, trees, zs[cfg.burn_in :], len(p))
            res[arm] = {
                "p": emp,
                "tv": 0.5 * float(np.abs(emp - p).sum()),
                "floor": iid_tv_floor(p, sweeps - cfg.burn_in, np.random.default_rng(seed)),
                "samples": sweeps - cfg.burn_in,
                "acceptance": acc,
            }
        out[model] = res
    return out


def predictive_experiment(
    name: str, X: np.ndarray, X_test: np.ndarray, cfg: PredictiveConfig, seed: int = 0, device=None
) -> dict:
    """Return both samplers' test LL at every horizon (equal CPU seconds) and top-down's at bottom-up's sweeps.

    The samplers (and the independent-Bernoulli baseline) see the first `cfg.n_train` rows of X. Both are the
    compiled (numba) kernels on one CPU thread, from the same starting trees. At each horizon h a sampler is
    read after its last sweep that finished within h CPU seconds; top-down is also read after as many sweeps
    as bottom-up had made by each horizon (equal sweeps).
    """
    X = X[: cfg.n_train]
    spn = build_rat_spn(X.shape[1], cfg.depth, cfg.n_repetitions, cfg.n_sums, cfg.n_leaves, seed=seed)
    hyper = Hyper.fixed(spn, cfg.alpha)
    warmup_top_down(spn, X, hyper)
    bottom_up_gibbs(spn, X[:2], init_state(spn, X[:2]), hyper, 1)  # compile the bottom-up kernel
    st0 = init_state(spn, X, seed=seed)
    out = {"name": name, "nodes": spn.n_nodes, "n_train": len(X), "horizons": list(cfg.horizons)}
    bu = run_sampler("bottom-up", spn, X, hyper, state=st0, horizons=cfg.horizons, n_keep=cfg.n_keep, seed=seed)
    marks = sorted({bu["sweeps_at"][h] for h in cfg.horizons} - {0})
    td = run_sampler(
        "top-down", spn, X, hyper, state=st0, horizons=cfg.horizons, sweep_marks=marks, n_keep=cfg.n_keep, seed=seed
    )
    ll = lambda states: (  # noqa: E731
        predictive_log_likelihood(spn, states, hyper, X_test, device=device) if states else float("nan")
    )
    for kind, r in (("bottom-up", bu), ("top-down", td)):
        r["test_ll_at"] = {h: ll(r["at_seconds"].pop(h)) for h in cfg.horizons}
        r["test_ll"] = r["test_ll_at"][cfg.horizons[-1]]
        del r["states"], r["at_seconds"]
        out[kind] = r
    # top-down after as many sweeps as bottom-up had made by each horizon
    at_sweeps = {k: ll(v) for k, v in td.pop("at_sweeps").items()}
    out["top-down equal sweeps"] = {h: at_sweeps.get(bu["sweeps_at"][h], float("nan")) for h in cfg.horizons}
    out["independent"] = independent_bernoulli_ll(X, X_test)
    return out


def tuning_experiment(X: np.ndarray, X_test: np.ndarray, cfg: TuningConfig, seed: int = 0) -> dict:
    """Return test LL, acceptance and final hyperparameters of top-down runs: fixed vs tuned, from two priors."""
    X = X[: cfg.n_train]
    spn = build_rat_spn(X.shape[1], cfg.depth, cfg.n_repetitions, cfg.n_sums, cfg.n_leaves, seed=seed)
    st0 = init_state(spn, X, seed=seed)
    out = {}
    for prior, (alpha, ab) in {"default": (1.0, 0.5), "poor": (1.0, 5.0)}.items():
        hyper = Hyper.fixed(spn, alpha, ab, ab)
        warmup_top_down(spn, X, hyper)
        for tune in (0, cfg.tune_every):
            run = run_sampler(
                "top-down", spn, X, hyper, state=st0, sweeps=cfg.sweeps, n_keep=cfg.n_keep, seed=seed, tune_every=tune
            )
            label = f"{prior}, {'tuned' if tune else 'fixed'}"
            out[label] = {
                "test_ll": predictive_log_likelihood(spn, run["states"], run["hyper"], X_test),
                "acceptance": run["acceptance"],
                "log_joint": run["log_joint"],
                "alpha": float(run["hyper"].alpha_edge[0]),
                "prior_mean": run["hyper"].a_var / (run["hyper"].a_var + run["hyper"].b_var),
                "strength": run["hyper"].a_var + run["hyper"].b_var,
            }
    return out


def run_sampler(
    kind: str,
    spn: SPNStructure,
    X: np.ndarray,
    hyper: Hyper,
    *,
    state: TreeState,
    seconds: float | None = None,
    sweeps: int | None = None,
    horizons: tuple[float, ...] = (),
    sweep_marks: tuple[int, ...] | list[int] = (),
    n_keep: int = 5,
    seed: int = 0,
    impl: str = "numba",
    device=None,
    tune_every: int = 0,
) -> dict:
    """Return a run's trace: sweeps, CPU seconds and log joint per sweep, the last `n_keep` counts, final hyper.

    Runs `kind` ("top-down" or "bottom-up", the latter as `impl`) for `sweeps` sweeps or until `seconds`
    (default: the last of `horizons`) CPU seconds of sampling have passed; with `tune_every > 0` re-tunes the
    hyperparameters by empirical Bayes every that many sweeps. Kept states are counts only (`counts_copy`).
    For each horizon h, "at_seconds"[h] holds the last `n_keep` states of the sweeps finished within h
    seconds and "sweeps_at"[h] their number; for each k in `sweep_marks`, "at_sweeps"[k] holds the last
    `n_keep` states after sweep k (if reached).
    """
    if kind not in ("top-down", "bottom-up"):
        raise ValueError(f"kind must be 'top-down' or 'bottom-up', got {kind!r}")
    if seconds is None and sweeps is None and horizons:
        seconds = max(horizons)
    if (seconds is None) == (sweeps is None):
        raise ValueError("give exactly one of seconds (or horizons) and sweeps")
    state = state.copy()
    trace_t, trace_lj, kept, acc = [0.0], [log_joint(spn, state, hyper)], [], []
    at_seconds, sweeps_at, at_sweeps = {}, {}, {}
    elapsed, i = 0.0, 0
    while (sweeps is not None and i < sweeps) or (seconds is not None and elapsed < seconds):
        if kind == "top-down":
            st = top_down_gibbs(spn, X, state, hyper, 1, seed=seed * 100_003 + i)
        else:
            state, st = bottom_up_gibbs(spn, X, state, hyper, 1, seed=seed * 100_003 + i, impl=impl, device=device)
        for h in horizons:  # a horizon passed during this sweep: read the states before it
            if h not in at_seconds and elapsed + st.seconds_per_sweep > h:
                at_seconds[h], sweeps_at[h] = list(kept), i
        elapsed += st.seconds_per_sweep
        acc.append(st.acceptance)
        i += 1
        if tune_every and i % tune_every == 0:
            hyper = tune_hyperparameters(spn, state, hyper, seed=seed + i)
        trace_t.append(elapsed)
        trace_lj.append(log_joint(spn, state, hyper))
        kept.append(state.counts_copy())
        kept = kept[-n_keep:]
        if i in sweep_marks:
            at_sweeps[i] = list(kept)
    for h in horizons:
        if h not in at_seconds:
            at_seconds[h], sweeps_at[h] = list(kept), i
    return {
        "sweeps": i,
        "seconds": np.array(trace_t),
        "log_joint": np.array(trace_lj),
        "states": kept,
        "at_seconds": at_seconds,
        "sweeps_at": sweeps_at,
        "at_sweeps": at_sweeps,
        "acceptance": float(np.mean(acc)) if acc else float("nan"),
        "hyper": hyper,
    }


def speed_table(
    spn_sizes: list[SPNStructure],
    X: np.ndarray,
    hyper_alpha: float = 1.0,
    sweeps: int = 2,
    seed: int = 0,
    td_sweeps: int | None = None,
    torch_max_nodes: int | None = None,
    gpu_device=None,
) -> list[dict]:
    """Return, per network, edge scans and seconds per sweep of both samplers from the same start.

    The comparison is between equally optimised implementations: both samplers are compiled numba loops in
    float64 on one CPU thread, timed in CPU seconds. The vectorised torch bottom-up (float32, one thread) is
    also timed ("bu_seconds_torch", up to `torch_max_nodes` nodes; NaN above), and with a CUDA `gpu_device`
    on the GPU ("bu_seconds_gpu"). Top-down runs `td_sweeps` sweeps (default: `sweeps`), so that its much
    shorter sweeps are timed well.
    """
    rows = []
    for spn in spn_sizes:
        hyper = Hyper.fixed(spn, hyper_alpha)
        warmup_top_down(spn, X, hyper)
        st0 = init_state(spn, X, seed=seed)
        small = counts_from_trees(spn, X[:64], st0.z[:64])
        td = top_down_gibbs(spn, X, st0.copy(), hyper, td_sweeps or sweeps, seed=seed)
        bottom_up_gibbs(spn, X[:64], small.copy(), hyper, 1, seed=seed)  # compile / warm-up
        _, bu = bottom_up_gibbs(spn, X, st0.copy(), hyper, sweeps, seed=seed)
        bu_torch = gpu = float("nan")
        if torch_max_nodes is None or spn.n_nodes <= torch_max_nodes:
            bottom_up_gibbs(spn, X[:64], small.copy(), hyper, 1, seed=seed, impl="torch")  # warm-up
            bu_torch = bottom_up_gibbs(spn, X, st0.copy(), hyper, sweeps, seed=seed, impl="torch")[1].seconds_per_sweep
        if gpu_device is not None and torch.device(gpu_device).type == "cuda":
            bottom_up_gibbs(spn, X[:64], small.copy(), hyper, 1, seed=seed, impl="torch", device=gpu_device)
            _, on_gpu = bottom_up_gibbs(spn, X, st0.copy(), hyper, sweeps, seed=seed, impl="torch", device=gpu_device)
            gpu = on_gpu.seconds_per_sweep
        rows.append(
            {
                "nodes": spn.n_nodes,
                "edges": spn.n_edges,
                "tree": spn.tree_size(),
                "td_visits": td.visits_per_sweep,
                "bu_visits": bu.visits_per_sweep,
                "td_seconds": td.seconds_per_sweep,
                "bu_seconds": bu.seconds_per_sweep,
                "bu_seconds_torch": bu_torch,
                "bu_seconds_gpu": gpu,
                "td_acceptance": td.acceptance,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ----------------------------------------------------------------------------------------------------

ARM_LABELS = ("top-down", "bottom-up", "always\naccept", "own counts\nkept", "counts ignored\nbelow root")
"""Short tick labels of the arms of `ARMS`, in its order."""


def plot_exactness(results: dict):
    """Draw the one-sum model's posterior per joint state (exact and every arm) and every arm's TV on both models."""
    one = results["one sum node"]
    arms = list(ARMS)
    fig, (a1, a2) = subplots(1, 2, figsize=(11.0, 3.8))
    idx = np.arange(one["n_states"])
    a1.bar(idx, one["p_exact"], color="0.8", label="exact")
    for k, (arm, mk) in enumerate(zip(arms, "os^vx", strict=True)):
        a1.plot(idx + (k - 2) * 0.13, one[arm]["p"], mk, ms=4, label=arm)
    label(a1, x="joint state of $(z_1, z_2, z_3, z_4)$, binary code", y="posterior probability", title="one sum node")
    a1.legend(fontsize=7)
    x = np.arange(len(arms))
    for j, (model, r) in enumerate(results.items()):
        colour = PALETTE[j]
        a2.bar(x + (j - 0.5) * 0.38, [r[a]["tv"] for a in arms], 0.38, color=colour, label=model)
        a2.hlines(
            r["top-down"]["floor"],
            -0.5,
            len(arms) - 0.5,
            colors=colour,
            linestyles=":",
            label=f"{model}: i.i.d. floor",
        )
    a2.set_xticks(x, ARM_LABELS, fontsize=8)
    label(a2, y="TV to the exact posterior", title="every arm, both models")
    a2.legend(fontsize=7)
    return fig


def plot_speed(rows: list[dict], scan_ratio: np.ndarray, time_ratio: np.ndarray, torch_ratio: np.ndarray):
    """Draw edge scans and CPU seconds per sweep of both samplers against network size, and their ratios."""
    nodes = np.array([r["nodes"] for r in rows])
    fig, (a1, a2, a3) = subplots(1, 3, figsize=(11.0, 3.4))
    for ax, key, lab in ((a1, "visits", "edge scans per sweep"), (a2, "seconds", "CPU seconds per sweep")):
        ax.loglog(nodes, [r[f"bu_{key}"] for r in rows], "o-", label="bottom-up (numba)")
        ax.loglog(nodes, [r[f"td_{key}"] for r in rows], "s--", label="top-down (numba)")
        label(ax, x="nodes in the network", y=lab)
    a2.loglog(nodes, [r["bu_seconds_torch"] for r in rows], "^:", color="0.4", label="bottom-up (torch)")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    a3.semilogx(nodes, scan_ratio, "o-", label="edge scans")
    a3.semilogx(nodes, time_ratio, "s--", label="CPU seconds, both numba")
    a3.semilogx(nodes, torch_ratio, "^:", color="0.4", label="CPU seconds, torch bottom-up")
    a3.axhline(10, color="0.6", lw=0.8, ls="-.", label="ten times")
    label(a3, x="nodes in the network", y="bottom-up / top-down", yscale="log")
    a3.legend(fontsize=7)
    return fig


def plot_predictive(result: dict, horizons):
    """Draw the log joint against CPU seconds, and the test LL at equal CPU seconds and at equal sweeps."""
    hs = np.array(horizons)
    fig, (a1, a2, a3) = subplots(1, 3, figsize=(11.0, 3.4))
    for kind, ls, mk in (("bottom-up", "-", "o"), ("top-down", "--", "s")):
        a1.plot(result[kind]["seconds"], result[kind]["log_joint"] / 1e3, ls, label=kind)
        a2.plot(hs, [result[kind]["test_ll_at"][h] for h in hs], ls + mk, label=kind)
    bu_sweeps = [result["bottom-up"]["sweeps_at"][h] for h in hs]
    a3.plot(bu_sweeps, [result["bottom-up"]["test_ll_at"][h] for h in hs], "-o", label="bottom-up")
    a3.plot(bu_sweeps, [result["top-down equal sweeps"][h] for h in hs], "--s", label="top-down")
    label(a1, x="CPU seconds", y=r"$\log p(\mathbf{X}, \mathbf{Z})$ / 1000", legend=True)
    for ax, x, values in ((a2, "CPU seconds (horizon)", hs), (a3, "sweeps", bu_sweeps)):
        label(ax, x=x, y="test LL per sample", xscale="log", legend=True)
        ticks(ax, values)
    return fig


def plot_tuning(results: dict):
    """Draw the test LL of the default and the poor prior, fixed and tuned (one line per prior)."""
    fig, ax = subplots(1, 1, figsize=(4.6, 3.0))
    for k, (prior, ls) in enumerate((("default", "o-"), ("poor", "s--"))):
        ys = [results[f"{prior}, fixed"]["test_ll"], results[f"{prior}, tuned"]["test_ll"]]
        ax.plot([0, 1], ys, ls, color=PALETTE[k], label=f"{prior} prior")
    ax.set_xticks([0, 1], ["fixed", "tuned"])
    label(ax, y="test LL per sample", xlim=(-0.3, 1.3), legend=True)
    return fig


def main() -> None:
    """Print per-sweep CPU time and edge scans of both compiled samplers at three sizes (NLTCS or its fallback)."""
    from lib.binary_data import load_binary

    torch.set_num_threads(1)
    data = load_binary("nltcs")
    X = data.train
    print(f"data: {data.name} ({data.source}), N={len(X)}, D={X.shape[1]}; both samplers numba, one thread")
    spns = [build_rat_spn(X.shape[1], 3, 4, k, k, seed=0) for k in (5, 10, 20)]
    for k, row in zip((5, 10, 20), speed_table(spns, X), strict=True):
        print(
            f"K={k:3d} nodes={row['nodes']:6d} | top-down {row['td_seconds'] * 1e3:8.1f} ms/sweep "
            f"{row['td_visits']:.3g} edge scans | bottom-up {row['bu_seconds'] * 1e3:8.1f} ms/sweep "
            f"{row['bu_visits']:.3g} edge scans | ratios: edge scans {row['bu_visits'] / row['td_visits']:.1f}x, "
            f"time {row['bu_seconds'] / row['td_seconds']:.1f}x"
        )


if __name__ == "__main__":
    main()
