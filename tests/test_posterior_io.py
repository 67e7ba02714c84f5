"""Posterior.save/load: the same atomic writer, a checked template, and a loader Dataset accepted by sample."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer.errors import FileFormatError


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
    # a file without a group the posterior reads later (post.loo(), log_likelihood): refused at load, by name (it
    # loaded, and the first use raised a bare AttributeError)
    import arviz as az

    idata = az.from_netcdf(str(path), engine="h5netcdf")
    groups = {g: getattr(idata, g) for g in idata.groups() if g != "log_likelihood"}
    az.InferenceData(**groups).to_netcdf(str(tmp_path / "no_ll.nc"), engine="h5netcdf")
    with pytest.raises(FileFormatError, match=r"no_ll\.nc: a damaged or incomplete posterior: \['log_likelihood'\] missing"):
        bayes.Posterior.load(tmp_path / "no_ll.nc", model)
    # a writer that fails: one FileFormatError, the earlier file intact, no temporary file left
    before = path.read_bytes()
    original = az.InferenceData.to_netcdf

    def failing(self, filename, **kw):
        open(filename, "wb").write(b"partial")
        raise ValueError("writer failed")

    az.InferenceData.to_netcdf = failing
    try:
        with pytest.raises(FileFormatError, match=r"could not write .*post\.nc.*ValueError: writer failed"):
            post.save(path)
    finally:
        az.InferenceData.to_netcdf = original
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["no_ll.nc", "post.nc"]
