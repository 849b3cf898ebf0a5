"""Bad inputs at every public entry point: ONE clear error that names the argument and
the fix, raised by ncl itself (never from inside JAX, never a NaN result); on the command
line ``ncl CMD: error: ...`` with exit code 2 (usage) or 1 (failure)."""
import json
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ncl
from ncl import artifacts, cli, io, sweep
from ncl import diagnostics as dg
from ncl import model as ncl_model
from ncl import reproduce as rp
from ncl import training as T
from ncl.chain import init as chain_init
from ncl.chain import sample_chain
from ncl.gradient import autodiff_gradient, two_step_gradient
from ncl.model import ModelConfig, Params, init_params

NCL_DIR = Path(ncl.__file__).resolve().parent
D, N = 16, 48
CFG = T.TrainConfig(epochs=2, steps_per_epoch=2, chain_length=4, batch_min=4, batch_max=8)
DCFG = dg.DiagnosticsConfig(burn_in=2, n_steps=16, n_chains=2, rb_samples=8, segment=8,
                            rb_chunk=8)
KEY = jax.random.key(0)


def raises_cleanly(exc, match, fn, *args, **kwargs):
    """``fn`` raises ``exc`` matching ``match``, and the raising frame is ncl's own code."""
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert Path(last.filename).resolve().is_relative_to(NCL_DIR), (
        f"raised from {last.filename}:{last.lineno}, not by ncl: {info.value}")
    return info.value


@pytest.fixture(scope="module")
def x():
    return (np.random.default_rng(0).random((N, D)) < 0.4).astype(np.float32)


@pytest.fixture(scope="module")
def ens(x):
    """A 2-member ensemble state (D = 16, L = 6) before training."""
    return T.init_ensemble_state([0, 1], x, CFG)


@pytest.fixture(scope="module")
def one(ens):
    return T.member(ens, 0)


# ----------------------------------------------------------------------------- bad data

def _bad(kind, x):
    bad = x.copy()
    if kind == "1-D":
        return x[0]
    if kind == "3-D":
        return x.reshape(N, 4, 4)
    if kind == "non-binary":
        return x * 0.5 + 0.25
    if kind == "counts":
        return (x * 255).astype(np.uint8)
    if kind == "NaN":
        bad[3, 2] = np.nan
    if kind == "inf":
        bad[0, 0] = np.inf
    if kind == "no rows":
        return x[:0]
    if kind == "no columns":
        return x[:, :0]
    if kind == "strings":
        return np.full((N, D), "1")
    return bad


BAD_DATA = {"1-D": "2-D array", "3-D": "2-D array", "non-binary": r"binary \(0/1\).*binarize",
            "counts": r"binary \(0/1\).*binarize", "NaN": "NaN or inf",
            "inf": "NaN or inf", "no rows": "empty", "no columns": "empty",
            "strings": "numeric 0/1"}

ENTRY_POINTS = {
    "train": lambda d, ens, one: T.train(0, d, CFG),
    "train_ensemble": lambda d, ens, one: T.train_ensemble([0, 1], d, CFG),
    "init_ensemble_state": lambda d, ens, one: T.init_ensemble_state([0], d, CFG),
    "continue_training": lambda d, ens, one: T.continue_training(ens, d, CFG, 0),
    "train_sweep": lambda d, ens, one: sweep.train_sweep(
        sweep.expand(CFG, {"lr": [0.1]}, [0]), d),
    "diagnose": lambda d, ens, one: dg.diagnose(KEY, one.params, one.center, CFG.model, d,
                                                DCFG),
    "diagnose_ensemble": lambda d, ens, one: dg.diagnose_ensemble(
        KEY, ens.params, ens.center, CFG.model, d, DCFG),
    "log_likelihood": lambda d, ens, one: ncl_model.log_likelihood_given_occupancy(
        one.params, d, jnp.log(jnp.full(6, 1 / 6)), CFG.model),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("kind", list(BAD_DATA))
def test_bad_data_is_rejected_at_every_entry_point(kind, entry, x, ens, one):
    err = raises_cleanly(ValueError, BAD_DATA[kind], ENTRY_POINTS[entry], _bad(kind, x),
                         ens, one)
    assert str(err).startswith("data ")  # names the argument


def test_init_params_rejects_non_2d_or_empty_data(x):
    raises_cleanly(ValueError, "non-empty 2-D", init_params, KEY, x[0], CFG.model)
    raises_cleanly(ValueError, "non-empty 2-D", init_params, KEY, x[:0], CFG.model)


# ------------------------------------------------------------------------- width / shape mismatches

WIDTH = r"has 12 columns but .*D = 16 visible units"


def test_continue_training_with_data_of_the_wrong_width(x, ens):
    raises_cleanly(ValueError, WIDTH, T.continue_training, ens, x[:, :12], CFG, 0)


def test_diagnose_with_data_of_the_wrong_width(x, one):
    raises_cleanly(ValueError, WIDTH, dg.diagnose, KEY, one.params, one.center, CFG.model,
                   x[:, :12], DCFG)


def test_diagnose_ensemble_with_data_of_the_wrong_width(x, ens):
    raises_cleanly(ValueError, WIDTH, dg.diagnose_ensemble, KEY, ens.params, ens.center,
                   CFG.model, x[:, :12], DCFG)


def test_log_likelihood_with_data_of_the_wrong_width(x, one):
    raises_cleanly(ValueError, WIDTH, ncl_model.log_likelihood_given_occupancy, one.params,
                   x[:, :12], jnp.zeros(6) - np.log(6), CFG.model)


def test_sample_chain_and_gradients_with_the_wrong_width(x, one):
    raises_cleanly(ValueError, "chain state x has 12 columns", sample_chain, KEY,
                   chain_init(x[:1, :12]), one.params, one.center[:12], CFG.model, 4)
    _, traj = sample_chain(KEY, chain_init(x[:1]), one.params, one.center, CFG.model, 4)
    for fn in (two_step_gradient, autodiff_gradient):
        raises_cleanly(ValueError, "batch has 12 columns", fn, one.params, traj, x[:8, :12],
                       one.center, CFG.model)
    raises_cleanly(ValueError, r"center must have shape \(16,\)", sample_chain, KEY,
                   chain_init(x[:1]), one.params, one.center[:12], CFG.model, 4)
    raises_cleanly(ValueError, "x0 has 12 columns", dg.hidden_trajectory, KEY, one.params,
                   one.center, CFG.model, x[0, :12], 2, 4)


def test_params_that_do_not_match_the_config(x, ens, one):
    five = ModelConfig(n_hidden=5)
    raises_cleanly(ValueError, r"6 hidden units .* n_hidden \(L\) = 5", dg.diagnose, KEY,
                   one.params, one.center, five, x, DCFG)
    cfg5 = T.TrainConfig(epochs=2, steps_per_epoch=2, chain_length=4, batch_min=4,
                         batch_max=8, model=five)
    raises_cleanly(ValueError, r"n_hidden \(L\) = 5", T.continue_training, ens, x, cfg5, 0)
    raises_cleanly(ValueError, "n_chains = 3", T.continue_training, ens, x,
                   T.TrainConfig(epochs=2, steps_per_epoch=2, chain_length=4, batch_min=4,
                                 batch_max=8, n_chains=3), 0)


def test_ensemble_and_single_model_confusions(x, ens, one):
    raises_cleanly(ValueError, r"one model.*ncl.training.member", dg.diagnose, KEY,
                   ens.params, ens.center, CFG.model, x, DCFG)
    raises_cleanly(ValueError, "an ensemble", dg.diagnose_ensemble, KEY, one.params,
                   one.center, CFG.model, x, DCFG)
    raises_cleanly(ValueError, "pass ensemble=False", T.continue_training, one, x, CFG, 0)
    raises_cleanly(ValueError, "pass ensemble=True", T.continue_training, ens, x, CFG, 0,
                   ensemble=False)
    raises_cleanly(TypeError, "state must be a TrainState", T.continue_training,
                   {"params": one.params}, x, CFG, 0)
    raises_cleanly(TypeError, "start_epoch must be an int", T.continue_training, ens, x,
                   CFG, 0.5)


def test_log_likelihood_rejects_probabilities_instead_of_logs_and_wrong_state_count(x, one):
    raises_cleanly(ValueError, r"pass jnp.log\(p_bar\)", ncl_model.log_likelihood_given_occupancy,
                   one.params, x, jnp.full(6, 1 / 6), CFG.model)
    raises_cleanly(ValueError, r"log_p_bar must have shape \(6,\)",
                   ncl_model.log_likelihood_given_occupancy, one.params, x, jnp.zeros(4),
                   CFG.model)


def test_bad_seed_or_key():
    raises_cleanly(TypeError, "seed_or_key must be an int seed", T.train, "seven",
                   np.ones((20, 4), np.float32), CFG)
    raises_cleanly(ValueError, "seeds must be a non-empty 1-D sequence of ints",
                   T.train_ensemble, [], np.ones((20, 4), np.float32), CFG)


# ----------------------------------------------------------------------------- config values

def test_L_below_2():
    raises_cleanly(ValueError, r"n_hidden \(L\) must be at least 2", ModelConfig, n_hidden=1)
    raises_cleanly(ValueError, r"n_hidden \(L\) must be at least 2", T.TrainConfig,
                   model={"n_hidden": 0})


def test_T_below_1():
    raises_cleanly(ValueError, "chain_length must be at least 1", T.TrainConfig,
                   chain_length=0)


def test_sample_chain_with_no_steps(x, one):
    raises_cleanly(ValueError, r"n_steps \(T\) must be a positive int", sample_chain, KEY,
                   chain_init(x[:1]), one.params, one.center, CFG.model, 0)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_or_non_finite_learning_rate(lr):
    raises_cleanly(ValueError, "learning_rate must be a positive finite number",
                   T.TrainConfig, learning_rate=lr)


@pytest.mark.parametrize("field", ["epochs", "steps_per_epoch"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_epoch_counts(field, value):
    raises_cleanly(ValueError, f"{field} must be at least 1", T.TrainConfig,
                   **{field: value})


def test_non_integer_epoch_count():
    raises_cleanly(TypeError, "epochs must be an integer", T.TrainConfig, epochs=2.5)


def test_string_boolean_in_a_config_dict_is_refused():
    """``"centering": "no"`` used to train WITH centering (a non-empty string is truthy)."""
    err = raises_cleanly(TypeError, "centering must be true or false", T.TrainConfig.from_dict,
                         {"model": {"centering": "no"}})
    assert "'no' (str)" in str(err) and "ModelConfig.centering" in str(err)
    raises_cleanly(TypeError, "monitor must be true or false", T.TrainConfig, monitor="false")


@pytest.mark.parametrize("field, value", [("epochs", True), ("chain_length", 4.0),
                                          ("n_chains", "2"), ("batch_max", None)])
def test_booleans_floats_and_strings_are_not_integers(field, value):
    raises_cleanly(TypeError, f"{field} must be an integer", T.TrainConfig, **{field: value})


@pytest.mark.parametrize("field", ["learning_rate", "rmsprop_decay", "rmsprop_eps",
                                   "init_subset_fraction"])
@pytest.mark.parametrize("value", ["0.1", None, True, [0.1]])
def test_wrong_types_of_real_fields_name_the_field(field, value):
    """Once a bare ``'<=' not supported`` TypeError that named no field."""
    err = raises_cleanly(TypeError, f"^{field} must be ", T.TrainConfig, **{field: value})
    assert f"TrainConfig.{field}" in str(err)


def test_numpy_scalars_are_accepted_and_stored_as_python_values():
    cfg = T.TrainConfig(learning_rate=np.float32(0.1), epochs=np.int64(6),
                        model=ModelConfig(n_hidden=np.int64(6), centering=np.bool_(False)))
    assert (type(cfg.learning_rate), type(cfg.epochs), type(cfg.model.n_hidden),
            type(cfg.model.centering)) == (float, int, int, bool)
    assert T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dg.DiagnosticsConfig(n_steps=np.int32(64), p_floor=np.float32(0.01)).n_steps == 64


def test_other_configs_check_types_too():
    from ncl import classifier as clf
    from ncl import compare as cmp
    raises_cleanly(TypeError, "rbm_exact must be true or false", cmp.CompareConfig,
                   rbm_exact="yes")
    raises_cleanly(TypeError, "sample_start must be one of 'noise', 'data'",
                   cmp.CompareConfig, sample_start=0)
    raises_cleanly(ValueError, "key_seed must be at most 4294967295", cmp.CompareConfig,
                   key_seed=2 ** 32)
    raises_cleanly(ValueError, r"first_seed \+ n_seeds", cmp.CompareConfig,
                   first_seed=2 ** 32 - 2)
    raises_cleanly(TypeError, r"p_floor must be a number in \(0, 1\)", dg.DiagnosticsConfig,
                   p_floor="small")
    raises_cleanly(TypeError, "burn_in must be an integer", dg.DiagnosticsConfig,
                   burn_in=2.5)
    raises_cleanly(TypeError, "steps must be an integer", clf.ClassifierConfig, steps=True)
    raises_cleanly(TypeError, "l2 must be a non-negative finite number",
                   clf.ClassifierConfig, l2="0")


@pytest.mark.parametrize("seeds, phrase", [
    ([0, 0], r"distinct .*\[0\] repeated"), ([2 ** 32], r"\[0, 2\*\*32\).*4294967296"),
    ([-1, 2], r"\[-1\]"), ([True, 1], r"seeds\[0\] is True"), ([0.0], r"seeds\[0\] is 0\.0"),
])
def test_bad_seeds_are_refused_before_training(x, seeds, phrase):
    for fn in (T.train_ensemble, T.init_ensemble_state):
        raises_cleanly(ValueError, phrase, fn, seeds, x, CFG)
    raises_cleanly(ValueError, phrase, rp.reproduce, "/nonexistent/never-written", seeds=seeds,
                   config=CFG, data=x)


def test_minibatch_larger_than_the_data_set(x):
    for fn in (lambda: T.train(0, x[:5], CFG), lambda: T.train_ensemble([0], x[:5], CFG),
               lambda: T.init_ensemble_state([0], x[:5], CFG)):
        raises_cleanly(ValueError, r"batch_max \(8\) is larger than the data set \(5 "
                       r"samples\); lower batch_max", fn)
    raises_cleanly(ValueError, "batch_min .* must not exceed batch_max", T.TrainConfig,
                   batch_min=20, batch_max=10)


def test_unknown_option_names():
    raises_cleanly(ValueError, r"unknown TrainConfig option\(s\): \['lr'\]; valid options",
                   T.TrainConfig.from_dict, {"lr": 0.1})
    raises_cleanly(ValueError, r"unknown ModelConfig option\(s\): \['L'\]",
                   T.TrainConfig.from_dict, {"model": {"L": 6}})
    raises_cleanly(ValueError, r"unknown ModelConfig option\(s\): \['nhidden'\]",
                   T.TrainConfig, model={"nhidden": 6})
    raises_cleanly(TypeError, "must be read from a dict", T.TrainConfig.from_dict, [1, 2])
    raises_cleanly(ValueError, r"unknown sweep setting 'foo'; valid", sweep.parse_grid,
                   "foo=1,2")
    raises_cleanly(ValueError, "not name=v1,v2", sweep.parse_grid, "lr")
    raises_cleanly(ValueError, "sweep setting lr: ", sweep.parse_grid, "lr=fast")


def test_binary_hidden_units_too_many_to_enumerate(x):
    big = ModelConfig(n_hidden=13, hidden="binary")
    p = Params(w=jnp.zeros((D, 13)), a=jnp.zeros(D), wbar=jnp.zeros((13, D)),
               abar=jnp.zeros(13))
    msg = r"L = 13 > 12 are not supported .* use n_hidden \(L\) <= 12"
    raises_cleanly(ValueError, msg, dg.diagnose, KEY, p, jnp.zeros(D), big, x, DCFG)
    # the likelihood given p̄ is linear in S: it enumerates up to 20 binary units
    huge = ModelConfig(n_hidden=21, hidden="binary")
    p21 = Params(w=jnp.zeros((D, 21)), a=jnp.zeros(D), wbar=jnp.zeros((21, D)),
                 abar=jnp.zeros(21))
    raises_cleanly(ValueError, r"binary L = 21 > 20 is not supported; use fewer hidden",
                   ncl_model.log_likelihood_given_occupancy, p21, x, jnp.zeros(4), huge)
    raises_cleanly(ValueError, msg, dg.rao_blackwell_log_transition_matrix, KEY, p,
                   jnp.zeros(D), big)
    raises_cleanly(ValueError, "use L <= 30", T.TrainConfig, model={"n_hidden": 31,
                                                                    "hidden": "binary"})


def test_reproduce_fails_before_training_when_diagnostics_cannot_run(tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("reproduce must fail before training")

    monkeypatch.setattr(T, "train_ensemble", no_training)
    raises_cleanly(ValueError, "L = 13 > 12", rp.reproduce, tmp_path, seeds=[0],
                   config=T.TrainConfig(model={"n_hidden": 13, "hidden": "binary"}))


# ----------------------------------------------------------------------------- saved runs

@pytest.fixture(scope="module")
def saved(tmp_path_factory, x):
    """A finished 2-member run (D = 16) saved with ncl.io.save_run."""
    state, hist = T.train_ensemble([0, 1], x, CFG)
    d = tmp_path_factory.mktemp("saved") / "run"
    io.save_run(d, state, hist, CFG, seeds=[0, 1])
    return d


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_load_run_missing_directory_or_files(tmp_path, saved):
    raises_cleanly(io.RunFileError, "not a directory", io.load_run, tmp_path / "nope")
    raises_cleanly(io.RunFileError, "config.json is missing", io.load_run, tmp_path)
    d = _copy(saved, tmp_path / "r")
    (d / io.HISTORY_FILE).unlink()
    raises_cleanly(io.RunFileError, "history.npz is missing", io.load_run, d)


def test_load_run_corrupt_files(tmp_path, saved):
    d = _copy(saved, tmp_path / "a")
    (d / io.STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
    raises_cleanly(io.RunFileError, "state.npz: the file is corrupt or truncated",
                   io.load_run, d)
    d = _copy(saved, tmp_path / "b")
    (d / io.CONFIG_FILE).write_text("{not json")
    raises_cleanly(io.RunFileError, "corrupt JSON", io.load_run, d)
    d = _copy(saved, tmp_path / "c")
    (d / io.CONFIG_FILE).write_text(json.dumps({"hello": 1}))
    raises_cleanly(io.RunFileError, "not the config.json of an ncl run", io.load_run, d)


def test_load_checkpoint_of_a_finished_run_or_an_empty_directory(tmp_path, saved):
    raises_cleanly(io.RunFileError, "holds a finished run .* nothing to resume",
                   io.load_checkpoint, saved)
    raises_cleanly(io.RunFileError, "checkpoint.npz is missing", io.load_checkpoint,
                   tmp_path)


def test_load_diagnostics_npz_corrupt_or_foreign(tmp_path):
    (tmp_path / artifacts.DIAGNOSTICS_FILE).write_bytes(b"garbage")
    raises_cleanly(ValueError, "corrupt or truncated.*ncl diagnose", artifacts.load_diagnostics_npz,
                   tmp_path)
    np.savez(tmp_path / artifacts.DIAGNOSTICS_FILE, a=1)
    raises_cleanly(ValueError, "lacks the arrays seeds", artifacts.load_diagnostics_npz, tmp_path)


# ----------------------------------------------------------------------------- command line

QUICK = ["--seeds", "2", "--epochs", "2", "--steps-per-epoch", "2", "-T", "4",
         "--batch-min", "4", "--batch-max", "8", "--cpu-devices", "1", "-q"]


def _cli(capsys, argv):
    """``(exit code, stderr)`` of ``ncl argv`` run in this process (argparse errors exit)."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    return rc, err


def _expect(capsys, argv, rc, *phrases):
    code, err = _cli(capsys, argv)
    assert code == rc, (code, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"ncl {argv[0]}: error: "), err
    for p in phrases:
        assert p in last, (p, last)
    assert "Traceback" not in err


@pytest.mark.parametrize("args, phrase", [
    (["-L", "1"], "-L/--hidden-units: n_hidden (L) must be at least 2"),
    (["-T", "0"], "argument -T/--chain-length: must be at least 1"),
    (["--lr", "0"], "argument --lr/--learning-rate: must be a positive finite number"),
    (["--lr", "-1"], "argument --lr/--learning-rate: must be a positive finite number"),
    (["--lr", "nan"], "argument --lr/--learning-rate: must be a positive finite number"),
    (["--epochs", "0"], "argument --epochs: must be at least 1"),
    (["--steps-per-epoch", "-2"], "argument --steps-per-epoch: must be at least 1"),
    (["--batch-min", "9"], "--batch-min, --batch-max: batch_min (9) must not exceed"),
    (["--hidden", "binary", "-L", "31"], "use L <= 30"),
    (["--digits", "0,0"], "--digits must be distinct digits 0..9"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_cli_train_usage_errors(capsys, tmp_path, args, phrase):
    _expect(capsys, ["train", *QUICK, *args, "--out", str(tmp_path / "o")], 2, phrase)
    assert not (tmp_path / "o").exists()


def test_cli_train_minibatch_larger_than_the_data(capsys, tmp_path):
    _expect(capsys, ["train", *QUICK, "--batch-max", "5000", "--out", str(tmp_path / "o")],
            2, "--batch-max 5000", "larger than the data set (3000 samples)",
            "--batch-max 3000 or less")


@pytest.mark.parametrize("content, phrase", [
    ('{"epoch": 3}', "--config: unknown TrainConfig option(s): ['epoch']; valid options"),
    ('{"model": {"L": 3}}', "--config: unknown ModelConfig option(s): ['L']"),
    ('[1, 2]', "--config: a TrainConfig must be read from a dict"),
    ('{"learning_rate": -1}', "--config: learning_rate must be a positive finite number"),
    ('{"epochs": "ten"}', "--config: epochs must be an integer"),
    ('{"chain_length": 0}', "--config: chain_length must be at least 1"),
    ('{"epochs": ', "--config: cannot parse"),
], ids=["unknown", "unknown-model", "not-a-table", "lr", "epochs-type", "T", "syntax"])
def test_cli_bad_config_file(capsys, tmp_path, content, phrase):
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    _expect(capsys, ["train", *QUICK, "--config", str(cfg), "--out", str(tmp_path / "o")],
            2, phrase)


@pytest.mark.parametrize("content, phrase", [
    ('{"model": {"centering": "no"}}',
     "--config: centering must be true or false (a boolean), got 'no' (str)"),
    ('{"monitor": 0}', "--config: monitor must be true or false (a boolean), got 0 (int)"),
    ('{"epochs": true}', "--config: epochs must be an integer"),
    ('{"gradient": 1}', "--config: gradient must be one of 'closed-form'"),
    ('{"rmsprop_decay": "0.9"}', "--config: rmsprop_decay must be a number in [0, 1)"),
], ids=["centering-string", "monitor-int", "epochs-bool", "gradient-int", "decay-string"])
def test_cli_config_file_values_of_the_wrong_type(capsys, tmp_path, content, phrase):
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    _expect(capsys, ["train", *QUICK, "--config", str(cfg), "--out", str(tmp_path / "o")],
            2, phrase)


def test_cli_seeds_past_2_to_the_32_are_refused(capsys, tmp_path):
    """--first-seed 4294967295 --seeds 2 would train seed 2**32, which wraps onto 0."""
    code, err = _cli(capsys, ["train", *QUICK, "--first-seed", str(2 ** 32 - 1), "--out",
                              str(tmp_path / "o")])
    assert code in (1, 2) and "Traceback" not in err, err
    assert "4294967296" in err and "2**32" in err, err


def test_cli_bad_toml_and_missing_config_file(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = [\n")
    _expect(capsys, ["train", *QUICK, "--config", str(cfg)], 2, "--config: cannot parse")
    cfg.write_text("[model]\nhiden = 'binary'\n")
    _expect(capsys, ["train", *QUICK, "--config", str(cfg)], 2,
            "unknown ModelConfig option(s): ['hiden']")
    _expect(capsys, ["train", *QUICK, "--config", str(tmp_path / "none.json")], 2,
            "does not exist")


@pytest.mark.parametrize("grid, rc, phrase", [
    ("foo=1,2", 2, "unknown sweep setting 'foo'"),
    ("lr=-1", 2, "--grid: learning_rate must be a positive finite number"),
    ("L=1", 2, "--grid: n_hidden (L) must be at least 2"),
    ("lr", 2, "grid item 'lr' is not name=v1,v2"),
    ("T=x", 2, "sweep setting T: "),
    ("batch_max=5000", 2, "larger than the data set"),
])
def test_cli_sweep_bad_grid(capsys, tmp_path, grid, rc, phrase):
    _expect(capsys, ["sweep", *QUICK, "--grid", grid, "--out", str(tmp_path / "s")], rc,
            phrase)


def test_cli_resume_missing_empty_corrupt_or_finished(capsys, tmp_path, saved):
    _expect(capsys, ["train", "--resume", str(tmp_path / "nope"), "-q"], 2,
            "--resume", "no such directory")
    _expect(capsys, ["train", "--resume", str(tmp_path), "-q"], 1,
            "checkpoint.npz is missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / io.CHECKPOINT_FILE).write_bytes(b"\x00garbage")
    _expect(capsys, ["train", "--resume", str(bad), "-q"], 1, "corrupt or truncated")
    _expect(capsys, ["train", "--resume", str(saved), "-q"], 1, "finished run",
            "nothing to resume")


def test_cli_diagnose_missing_or_corrupt_run(capsys, tmp_path, saved):
    quick = ["--quick", "-q", "--no-figures", "--out", str(tmp_path / "out")]
    _expect(capsys, ["diagnose", str(tmp_path / "nope"), *quick], 2, "RUN_DIR",
            "no such directory")
    _expect(capsys, ["diagnose", str(tmp_path), *quick], 1, "config.json is missing")
    d = _copy(saved, tmp_path / "a")
    (d / io.STATE_FILE).write_bytes(b"garbage")
    _expect(capsys, ["diagnose", str(d), *quick], 1, "state.npz", "corrupt or truncated")
    d = _copy(saved, tmp_path / "b")
    (d / io.CONFIG_FILE).write_text("{")
    _expect(capsys, ["diagnose", str(d), *quick], 1, "corrupt JSON")
    _expect(capsys, ["diagnose", str(saved), "--quick", "-q", "--diag-steps", "3"], 2,
            "--diag-steps: n_steps (3) must be at least")


def test_cli_diagnose_run_of_another_width(capsys, tmp_path, saved):
    """The saved run has D = 16; its recorded data (the bundled subset) has 784 columns."""
    _expect(capsys, ["diagnose", str(saved), "--quick", "-q", "--no-figures", "--out",
                     str(tmp_path / "o")], 1, "784 columns", "D = 16")


def test_cli_figures_missing_or_corrupt(capsys, tmp_path):
    _expect(capsys, ["figures", str(tmp_path / "nope"), "-q"], 2, "not found")
    (tmp_path / artifacts.DIAGNOSTICS_FILE).write_bytes(b"garbage")
    _expect(capsys, ["figures", str(tmp_path), "-q"], 1, "corrupt or truncated")
    np.savez(tmp_path / artifacts.DIAGNOSTICS_FILE, a=1)
    _expect(capsys, ["figures", str(tmp_path), "-q"], 1, "lacks the arrays")


def test_cli_reproduce_rejects_binary_L_too_large_before_training(capsys, tmp_path):
    _expect(capsys, ["reproduce", "--quick", "--hidden", "binary", "-L", "13", "-q",
                     "--out", str(tmp_path / "r")], 2, "-L/--hidden", "L = 13 > 12")
    assert not (tmp_path / "r").exists()
