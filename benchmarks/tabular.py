"""Tabular planning: bellman against pymdptoolbox on grid worlds of 50 x 50 to 1000 x 1000 cells.

Both libraries get the same input (P as a list of A sparse (S, S) matrices, R as (S, A), the same gamma)
and the same stopping rule, in one process:
- value iteration stops at the first k with ||v_k - v_{k-1}||_inf < tol. pymdptoolbox stops when the
  span (max - min) of v_k - v_{k-1} is below epsilon (1 - gamma) / gamma; we pass
  epsilon = tol gamma / (1 - gamma), swap its span for the sup norm (`mdptoolbox.util.getSpan`) and lift
  the iteration cap its constructor computes (Puterman's bound, which here stops one sweep short of tol),
  so both run the same number of sweeps and must agree to round-off;
- policy iteration starts from the greedy policy of R in both, evaluates exactly and stops when the
  policy is stable.
Timed: "total" = building the model from (P, R) (bellman: `TabularMDP.from_arrays`, which validates it;
pymdptoolbox: the solver's constructor, which validates it and, for value iteration, bounds the number
of iterations) plus solving; "solve" = the solve alone. Peak memory: tracemalloc peak of a second, traced
run (numpy/scipy buffers), and the process's maximum resident set size so far.
pymdptoolbox is skipped where it would take too long or too much memory (see --peer-max-states-*), and
policy iteration above --pi-max-states.

    .venv/bin/python benchmarks/tabular.py [--sizes 50 100 200 500 1000] [--tol 1e-6]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
import warnings
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import mdptoolbox.mdp  # noqa: E402
import mdptoolbox.util  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from bellman.envs.gridworld import GridWorld  # noqa: E402
from bellman.mdp import TabularMDP  # noqa: E402
from bellman.planning import policy_iteration, value_iteration  # noqa: E402

GAMMA = 0.9


def grid_world(n: int, seed: int = 0) -> tuple[list[sp.csr_matrix], np.ndarray, GridWorld]:
    """An n x n grid world with 10% forbidden cells, target bottom-right, in the MDP-toolbox layout."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(n * n - 1, size=(n * n) // 10, replace=False)  # never the target, the last cell
    env = GridWorld(n, n, forbidden=[divmod(int(s), n) for s in cells], gamma=GAMMA)
    S, A = env.next_state.shape
    P = [sp.csr_matrix((np.ones(S), (np.arange(S), env.next_state[:, a])), shape=(S, S)) for a in range(A)]
    return P, env.mdp.R, env


def sup_norm(w: np.ndarray) -> float:
    return float(np.max(np.abs(w)))


def measure(run: Callable[[], Any], repeat: int, trace: bool) -> tuple[float, Any, float]:
    """Best wall time of up to `repeat` runs (fewer once 3 s are spent), the last result, and the
    tracemalloc peak (MiB) of one more run."""
    best, out, spent = np.inf, None, 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        result = run()
        elapsed = time.perf_counter() - t
        spent += elapsed
        if elapsed < best:
            best, out = elapsed, result
        if spent > 3.0:
            break
    peak = np.nan
    if trace:
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return best, out, peak


def bellman_vi(P, R, tol):
    mdp = TabularMDP.from_arrays(P, R, GAMMA)
    t = time.perf_counter()
    result = value_iteration(mdp, tol=tol, keep_history=False)
    return result.v, result.iterations, time.perf_counter() - t


def bellman_pi(P, R, tol):
    mdp = TabularMDP.from_arrays(P, R, GAMMA)
    t = time.perf_counter()
    result = policy_iteration(mdp, keep_history=False)
    return result.v, result.iterations, time.perf_counter() - t


def peer_vi(P, R, tol):
    solver = mdptoolbox.mdp.ValueIteration(P, R, GAMMA, epsilon=tol * GAMMA / (1 - GAMMA))
    solver.max_iter = 10**6  # its constructor caps the sweeps with a bound that stops one short of tol here
    t = time.perf_counter()
    solver.run()
    return np.array(solver.V), solver.iter, time.perf_counter() - t


def peer_pi(P, R, tol):
    solver = mdptoolbox.mdp.PolicyIteration(P, R, GAMMA, eval_type=0)
    t = time.perf_counter()
    solver.run()
    return np.array(solver.V), solver.iter, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--peer-max-states-vi", type=int, default=10_000,
                        help="largest S for pymdptoolbox ValueIteration (its iteration bound loops over columns)")
    parser.add_argument("--peer-max-states-pi", type=int, default=2_500,
                        help="largest S for pymdptoolbox PolicyIteration (it builds a dense S x S P_pi)")
    parser.add_argument("--pi-max-states", type=int, default=10_000,
                        help="largest S for policy iteration at all: its iterations grow with the grid's diameter "
                             "(139 at 100 x 100), each an exact sparse solve")
    parser.add_argument("--no-memory", action="store_true", help="skip the traced runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=sp.SparseEfficiencyWarning)  # pymdptoolbox's own checks
    mdptoolbox.util.getSpan = sup_norm  # same stopping rule as bellman: the sup norm of the change

    header = f"{'algo':4} {'grid':>11} {'S':>9} {'lib':12} {'iters':>5} {'total s':>9} {'solve s':>9} " \
             f"{'peak MiB':>9} {'maxrss MiB':>10}"
    print(f"gamma={GAMMA} tol={args.tol} OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(header)
    summary = []
    for n in args.sizes:
        P, R, _ = grid_world(n)
        S = n * n
        for algo, ours, peer, peer_max in (
            ("VI", bellman_vi, peer_vi, args.peer_max_states_vi),
            ("PI", bellman_pi, peer_pi, args.peer_max_states_pi),
        ):
            repeat = 5 if S <= 10_000 else 1
            rows = {}
            for lib, run in (("bellman", ours), ("pymdptoolbox", peer)):
                if algo == "PI" and S > args.pi_max_states:
                    print(f"{algo:4} {f'{n} x {n}':>11} {S:>9} {lib:12} skipped (S > {args.pi_max_states}: "
                          "iterations grow with the diameter)")
                    continue
                if lib == "pymdptoolbox" and S > peer_max:
                    print(f"{algo:4} {f'{n} x {n}':>11} {S:>9} {lib:12} skipped (S > {peer_max}: too slow or too big)")
                    continue
                total, (v, iters, solve), peak = measure(lambda: run(P, R, args.tol), repeat, not args.no_memory)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rows[lib] = (total, solve, v)
                print(f"{algo:4} {f'{n} x {n}':>11} {S:>9} {lib:12} {iters:>5} {total:>9.3f} {solve:>9.3f} "
                      f"{peak:>9.1f} {rss:>10.0f}", flush=True)
            if len(rows) == 2:
                (t_ours, s_ours, v_ours), (t_peer, s_peer, v_peer) = rows["bellman"], rows["pymdptoolbox"]
                diff = sup_norm(v_ours - v_peer)
                line = (f"{algo} {n} x {n}: pymdptoolbox / bellman = {t_peer / t_ours:.1f}x total, "
                        f"{s_peer / s_ours:.1f}x solve; max |v_bellman - v_peer| = {diff:.2e}")
                print("   ", line, flush=True)
                summary.append(line)
    print("\nratios (higher: bellman faster)")
    for line in summary:
        print("   ", line)


if __name__ == "__main__":
    main()
