"""An independent check of two classical agents' held-out scores on mohanta2022 (no plasticinfer model code).

FlYMazeRL's forgetting agent ("FI": every value decays by 1 − α, the chosen one then gains α·r) and the
differential-forgetting agent ("DF": the chosen value moves α toward r, the unchosen decays by 1 − κ),
each with the accept–reject policy P(1) = a₁(3 − a₀)/(3a₀ + 3a₁ − 2a₀a₁), a_k = sigmoid(weight·Q_k + b),
written here as plain NumPy loops from those equations, fitted by SciPy (Nelder–Mead, three starts) on
the 88 training flies and scored on the 44 test flies from naive: normalized likelihood exp(mean
log-likelihood per choice), mean ± SE over flies. Compare with the "Q, forget unchosen (F) · AR" and
"Q, diff. forget unchosen (DF) · AR" rows of bench_behaviour.py (same protocol, plasticinfer's fits).

    python benchmarks/oracle_agents.py          (about 10 minutes: pure Python loops)
"""

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

import plasticinfer as pi


def fly_ll(params, c, r, m, variant):
    """(log-likelihood, number of choices) of one fly under the agent with these (unconstrained) parameters."""
    a = expit(params[0])
    wt, b = params[1], params[2]
    k = expit(params[3]) if variant == "DF" else a
    q = np.zeros(2)
    ll, n = 0.0, 0
    for t in range(len(c)):
        if not m[t]:
            continue
        a0, a1 = expit(wt * q + b)
        p1 = a1 * (3 - a0) / (3 * a0 + 3 * a1 - 2 * a0 * a1)
        ll += np.log(max(p1 if c[t] == 1 else 1 - p1, 1e-300))
        n += 1
        ch = c[t]
        if variant == "FI":  # every value decays by 1 − α, the chosen one gains α·r
            q = (1 - a) * q
            q[ch] += a * r[t]
        else:  # the chosen value moves α toward r, the unchosen decays by 1 − κ
            q[ch] += a * (r[t] - q[ch])
            q[1 - ch] *= 1 - k
    return ll, n


def main():
    ds = pi.datasets.load("mohanta2022")
    choice, reward, mask, split = ds.choice.values, ds.reward.values, ds.trial_mask.values, ds.split.values
    train, test = np.flatnonzero(split == "training"), np.flatnonzero(split == "test")

    def total(params, variant):
        return -sum(fly_ll(params, choice[i], reward[i], mask[i], variant)[0] for i in train)

    for variant, x0 in [("FI", [np.log(0.2 / 0.8), 3.0, 0.0]), ("DF", [np.log(0.2 / 0.8), 3.0, 0.0, -2.0])]:
        best = None
        for start in [x0, [0.0, 5.0, -1.0] + x0[3:], [-2.0, 8.0, -2.0] + x0[3:]]:
            res = minimize(total, start, args=(variant,), method="Nelder-Mead", options=dict(maxiter=2000, xatol=1e-4, fatol=1e-4))
            if best is None or res.fun < best.fun:
                best = res
        nl = [np.exp(ll / n) for ll, n in (fly_ll(best.x, choice[i], reward[i], mask[i], variant) for i in test)]
        print(f"{variant}: training −log-lik {best.fun:.2f}; held-out normalized likelihood {np.mean(nl):.4f} ± "
              f"{np.std(nl, ddof=1) / np.sqrt(len(nl)):.4f} over {len(nl)} test flies", flush=True)


if __name__ == "__main__":
    main()
