"""Hostile data and files at the public entry points (hypothesis): every bad input ends
in one ValueError/TypeError (or RunFileError) that names the problem, before any
compilation; never a traceback from inside JAX or NumPy, never silent acceptance."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ncl import io
from ncl import training as T

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
CFG = T.TrainConfig(epochs=1, steps_per_epoch=1, chain_length=2, batch_min=2, batch_max=2)

bad_values = st.sampled_from([np.nan, np.inf, -np.inf, 2.0, -1.0, 0.5, 255.0])
binary_arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=2,
                                                         max_side=6),
                           elements=st.sampled_from([0.0, 1.0]))


@SETTINGS
@given(binary_arrays, bad_values, st.data())
def test_non_binary_or_non_finite_data_is_refused(x, bad, data):
    i = data.draw(st.integers(0, x.shape[0] - 1))
    j = data.draw(st.integers(0, x.shape[1] - 1))
    x = x.copy()
    x[i, j] = bad
    with pytest.raises(ValueError, match="data") as e:
        T.train_ensemble([0, 1], x, CFG)
    assert "NaN or inf" in str(e.value) or "binary" in str(e.value)


@SETTINGS
@given(st.one_of(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)),
    st.lists(st.lists(st.integers(0, 1), max_size=3), max_size=3),
    st.text(max_size=5), st.none(),
    hnp.arrays(np.complex64, (3, 4)), hnp.arrays("U1", (3, 4), elements=st.just("1"))))
def test_data_of_wrong_shape_or_type_is_refused(x):
    arr = None
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        pass
    ok = (arr is not None and arr.ndim == 2 and arr.size > 0 and arr.dtype.kind in "biuf"
          and np.all(np.isfinite(arr.astype(float))) and np.all((arr == 0) | (arr == 1))
          and arr.shape[0] >= CFG.batch_max)
    if ok:
        return  # a valid data set: covered elsewhere
    with pytest.raises((ValueError, TypeError), match="data|batch_max"):
        T.train_ensemble([0, 1], x, CFG)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([io.STATE_FILE, io.HISTORY_FILE,
                                                 io.CONFIG_FILE, io.MANIFEST_FILE]))
def test_garbage_run_files_are_a_clear_error(tmp_path_factory, blob, name):
    d = tmp_path_factory.mktemp("run")
    for n in (io.STATE_FILE, io.HISTORY_FILE, io.CONFIG_FILE, io.MANIFEST_FILE):
        (d / n).write_bytes(b"{}" if n.endswith(".json") else b"")
    (d / name).write_bytes(blob)
    with pytest.raises(io.RunFileError):
        io.load_run(d)
