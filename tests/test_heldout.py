"""Held-out log-likelihood (eq. 5 given p̄ on the bundled MNIST test images of the paper's
digits): checked against the likelihood computed directly from the returned p̄; adding it
changes no other diagnostic; bad held-out input gets one clear error."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import diagnostics as dg
from ncl.data import load_heldout_data
from ncl.model import log_likelihood_given_occupancy
from ncl.training import TrainConfig, train_ensemble

DCFG = dg.DiagnosticsConfig(burn_in=20, n_steps=400, n_chains=4, rb_samples=100)


@pytest.fixture(scope="module")
def trained(paper_data):
    x, _ = paper_data
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, chain_length=8)
    state, _ = train_ensemble([0, 1], x, cfg)
    return x, cfg, state


def test_heldout_loglik_matches_the_direct_computation(trained):
    x, cfg, st = trained
    xh, _ = load_heldout_data()
    d0 = dg.diagnose_ensemble(jax.random.key(1), st.params, st.center, cfg.model, x, DCFG)
    d1 = dg.diagnose_ensemble(jax.random.key(1), st.params, st.center, cfg.model, x, DCFG,
                              heldout=xh)
    assert d0.loglik_heldout is None
    for name in d0._fields:
        if getattr(d0, name) is not None:
            np.testing.assert_array_equal(np.asarray(getattr(d0, name)),
                                          np.asarray(getattr(d1, name)), err_msg=name)
    for i in range(2):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], st.params)
        direct = log_likelihood_given_occupancy(p, jnp.asarray(xh, jnp.float32),
                                                jnp.log(jnp.asarray(d1.p_bar[i])), cfg.model)
        assert float(direct) == pytest.approx(float(d1.loglik_heldout[i]), abs=1e-3)
    assert np.all(d1.loglik_heldout_err > 0) and np.all(np.isfinite(d1.loglik_heldout_rb))
    assert "loglik_heldout" in d1.summary()


@pytest.mark.parametrize("bad, match", [(np.ones((5, 10)), "heldout has 10 pixels"),
                                        (np.full((5, 784), 0.5), "heldout must be binary"),
                                        (np.ones(784), "heldout must be a 2-D array")])
def test_bad_heldout_is_named(trained, bad, match):
    x, cfg, st = trained
    with pytest.raises(ValueError, match=match):
        dg.diagnose_ensemble(jax.random.key(1), st.params, st.center, cfg.model, x, DCFG,
                             heldout=bad)
