"""Posterior.save/load: the same atomic writer, a checked template, and a loader Dataset accepted by sample."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer import bayes


def _model(terms):
    return pi.PlasticityModel.create(
        pi.TaylorRule(list(terms), learning_rate=0.05), pi.FeedForward(3, 2), pi.GaussianActivity(0.5),
        n_trajectories=1, key=jax.random.key(4),
    )


@pytest.mark.slow
def test_posterior_round_trip_and_mismatch(tmp_path):
    from plasticinfer._convert import activity_dataset

    syn = pi.make_activity_data(
        pi.oja(0.05), pi.FeedForward(3, 2), pi.GaussianInputs.isotropic(3), key=jax.random.key(0), n_trajectories=1, n_trials=20
    )
    model = _model(("x*y", "y^2*w"))
    ds = pi.validate(activity_dataset(syn))  # sample() takes the loader's Dataset directly
    post = bayes.sample(model, ds, key=jax.random.key(1), method=bayes.NUTS(warmup=30, samples=20, chains=1), warn=False)
    # one chain: R-hat cannot be computed, and the diagnostics say so (they used to say nothing)
    assert any(m.startswith("one chain: R-hat cannot be computed") for m in post.diagnostics())
    path = post.save(tmp_path / "post.nc")
    assert "0x" not in "".join(str(v) for v in post.idata.posterior.attrs.values())
    back = bayes.Posterior.load(path, model)
    np.testing.assert_array_equal(back.draws("theta"), post.draws("theta"))
    with pytest.raises(pi.DataError, match=r"(?s)post.nc.*terms: file has 2 \['x\*y', 'y\^2\*w'\], like= has 3 \['x\*y', 'y\^2\*w', 'w'\]"):
        bayes.Posterior.load(path, _model(("x*y", "y^2*w", "w")))
    with pytest.raises(pi.DataError, match="missing.nc"):
        bayes.Posterior.load(tmp_path / "missing.nc", model)
