"""Hostile config values (hypothesis): every field of every config dataclass has one
type-and-range rule (:mod:`ncl._validate`). A value of the wrong type or out of range is
ONE ``TypeError``/``ValueError`` whose message names the field — never silent acceptance,
never another exception; valid NumPy scalars are accepted and normalised to plain Python
values (hashable, JSON-able). Seeds: ints in ``[0, 2**32)``, distinct.

Host-side only: nothing here compiles a training program.
"""
import dataclasses
import json
import math
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncl import _validate as V
from ncl import classifier as clf
from ncl import compare as cmp
from ncl import diagnostics as dg
from ncl import reproduce as rp
from ncl import sweep
from ncl import training as T
from ncl.model import HIDDEN_KINDS, RECOGNITION_KINDS, ModelConfig, Params

I32 = 2 ** 31 - 1
SEED_MAX = 2 ** 32 - 1
POS = ("real", 0, None, True, False)          # (0, inf)
UNIT_OPEN = ("real", 0, 1, True, True)        # (0, 1)

# ----------------------------------------------------------------------------- the oracle:
# the rule of every field, written independently of ncl's tables.

SPECS = {
    ModelConfig: {
        "n_hidden": ("int", 2, I32), "hidden": ("choice", HIDDEN_KINDS),
        "recognition": ("choice", RECOGNITION_KINDS), "centering": ("bool", False),
        "learn_visible_bias": ("bool", True)},
    T.TrainConfig: {
        "model": ("model",), "chain_length": ("int", 1, I32),
        "n_chains": ("int", 1, I32), "learning_rate": POS, "epochs": ("int", 1, I32),
        "steps_per_epoch": ("int", 1, I32), "batch_min": ("int", 1, I32),
        "batch_max": ("int", 1, I32), "rmsprop_decay": ("real", 0, 1, False, True),
        "rmsprop_eps": POS, "init_subset_fraction": ("real", 0, 1, True, False),
        "gradient": ("choice", T.GRADIENT_FORMS), "family": ("choice", T.FAMILIES),
        "batch_buckets": ("int", 1, I32), "monitor": ("bool", False),
        "scan_unroll": ("int", 1, I32), "member_chunk": ("int", 1, I32)},
    dg.DiagnosticsConfig: {
        "burn_in": ("int", 0, I32), "n_steps": ("int", 1, I32), "n_chains": ("int", 2, I32),
        "rb_samples": ("int", 1, I32), "loglik_chunk": ("int", 1, I32),
        "p_floor": UNIT_OPEN, "segment": ("int", 1, I32), "rb_chunk": ("int", 1, I32)},
    clf.ClassifierConfig: {
        "steps": ("int", 1, I32), "learning_rate": POS, "l2": ("real", 0, None, False, False)},
    cmp.CompareConfig: {
        "train": ("instance", T.TrainConfig), "n_seeds": ("int", 2, I32),
        "first_seed": ("int", 0, SEED_MAX), "rbm_learning_rates": ("reals", POS),
        "rbm_exact": ("bool", False), "diagnostics": ("instance", dg.DiagnosticsConfig),
        "sample_chains": ("int", 1, I32), "sample_start": ("choice", ("noise", "data")),
        "sample_burn_in": ("int", 0, I32), "samples_per_chain": ("int", 1, I32),
        "sample_spacing": ("int", 1, I32), "confidence": UNIT_OPEN, "n_boot": ("int", 1, I32),
        "key_seed": ("int", 0, SEED_MAX)},
    cmp.Arm: {"name": ("text",), "config": ("instance", T.TrainConfig)},
    sweep.SweepMember: {
        "index": ("int", 0, I32), "seed": ("int", 0, SEED_MAX), "settings": ("settings",),
        "config": ("instance", T.TrainConfig)},
    rp.RunParameters: {
        "config": ("instance", T.TrainConfig), "params": ("never",), "center": ("never",),
        "history": ("never",), "seeds": ("seedseq",), "meta": ("instance", dict)},
}


def _int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _real(v, lo, hi, lo_open, hi_open):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                             np.floating)):
        return False
    try:
        f = float(v)
    except OverflowError:
        return False
    return (math.isfinite(f) and (lo is None or (f > lo if lo_open else f >= lo))
            and (hi is None or (f < hi if hi_open else f <= hi)))


def valid(spec, v) -> bool:
    """Whether the field rule ``spec`` accepts ``v``."""
    kind = spec[0]
    if kind == "int":
        return _int(v) and spec[1] <= v <= spec[2]
    if kind == "real":
        return _real(v, *spec[1:])
    if kind == "bool":
        return isinstance(v, (bool, np.bool_)) or (spec[1] and v is None)
    if kind == "choice":
        return isinstance(v, str) and v in spec[1]
    if kind == "instance":
        return isinstance(v, spec[1])
    if kind == "model":               # a ModelConfig, or a dict of its options
        return isinstance(v, ModelConfig) or v == {}
    if kind == "text":
        return isinstance(v, str) and v != ""
    if kind == "reals":
        return isinstance(v, (list, tuple)) and all(_real(x, *spec[1][1:]) for x in v)
    if kind == "settings":
        return isinstance(v, (list, tuple)) and all(
            isinstance(p, tuple) and len(p) == 2 and p[0] in sweep.SWEEPABLE for p in v)
    if kind == "seedseq":
        return (isinstance(v, (list, tuple)) and len(v) > 0
                and all(_int(x) and 0 <= x <= SEED_MAX for x in v))
    return False  # "never": no hostile value is an ensemble's params/center/history


def normalised(spec, v):
    """What the config stores for a valid ``v``: plain Python values."""
    kind = spec[0]
    if kind == "int":
        return int(v)
    if kind == "real":
        return float(v)
    if kind == "bool":
        return None if v is None else bool(v)
    if kind == "reals":
        return tuple(float(x) for x in v)
    if kind in ("settings", "seedseq"):
        return tuple(int(x) for x in v) if kind == "seedseq" else tuple(v)
    if kind == "model":
        return ModelConfig(**v) if isinstance(v, dict) else v
    return v


# ----------------------------------------------------------------------------- building


def _run_parameters_base():
    S, D, L = 2, 4, 3
    params = Params(w=np.zeros((S, D, L), np.float32), a=np.zeros((S, D), np.float32),
                    wbar=np.zeros((S, L, D), np.float32), abar=np.zeros((S, L), np.float32))
    return dict(config=T.TrainConfig(), params=params, center=np.zeros((S, D), np.float32),
                history=types.SimpleNamespace(loglik=np.zeros((S, 1))), seeds=(0, 1), meta={})


BASE = {cmp.Arm: lambda: dict(name="NCL", config=T.TrainConfig()),
        sweep.SweepMember: lambda: dict(index=0, seed=0, settings=(), config=T.TrainConfig()),
        rp.RunParameters: _run_parameters_base}


def build(cls, field, value):
    """``cls`` with ``field=value`` and every other field valid."""
    return cls(**{**BASE.get(cls, dict)(), field: value})


# every way a value reaches a config: the constructor, from_dict, a nested model dict
PATHS = [(cls.__name__, f, cls, (lambda c, fld: lambda v: build(c, fld, v))(cls, f))
         for cls, spec in SPECS.items() for f in spec]
PATHS += [("TrainConfig.from_dict", f, T.TrainConfig,
           (lambda fld: lambda v: T.TrainConfig.from_dict({fld: v}))(f))
          for f in SPECS[T.TrainConfig] if f != "model"]
PATHS += [("TrainConfig.from_dict[model]", f, ModelConfig,
           (lambda fld: lambda v: T.TrainConfig.from_dict({"model": {fld: v}}).model)(f))
          for f in SPECS[ModelConfig]]
PATH_IDS = [f"{p}.{f}" for p, f, _, _ in PATHS]

HOSTILE = st.one_of(
    st.text(max_size=6), st.sampled_from(["no", "false", "0", "1", "true", "", "paper"]),
    st.booleans(), st.none(), st.just(np.bool_(True)), st.just(np.bool_(False)),
    st.lists(st.integers(-3, 3), max_size=3), st.just({"a": 1}), st.just(()),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), np.float64("nan"),
                     np.float32("inf"), 0.0, -0.0, 1.0, 1.5, -1.5]),
    st.integers(-2 ** 70, 2 ** 70), st.sampled_from([10 ** 400, -10 ** 400, 2 ** 31, 2 ** 32,
                                                    -1, 0, 1, 2]),
    st.builds(np.int64, st.integers(-2 ** 63, 2 ** 63 - 1)),
)

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def test_every_field_of_every_config_has_a_rule_in_the_oracle():
    for cls, spec in SPECS.items():
        assert set(spec) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.parametrize("path, field, cls, make", PATHS, ids=PATH_IDS)
@FAST
@given(value=HOSTILE)
def test_hostile_values_raise_one_clear_error_naming_the_field(path, field, cls, make, value):
    spec = SPECS[cls][field]
    if not valid(spec, value):
        with pytest.raises((TypeError, ValueError)) as info:
            make(value)
        assert field in str(info.value), (path, field, value, str(info.value))
        return
    try:
        obj = make(value)
    except ValueError as e:  # valid alone, but a cross-field rule refuses it
        assert field in str(e), (path, field, value, str(e))
        return
    stored = getattr(obj, field)
    want = normalised(spec, value)
    assert stored == want and type(stored) is type(want), (path, field, value, stored)


def _numpy_scalar(spec, draw):
    kind = spec[0]
    if kind == "int":
        v = draw(st.integers(spec[1], min(spec[2], 10 ** 6)))
        return draw(st.sampled_from([np.int64, np.int32, np.uint32, np.int16]
                                    if v < 2 ** 15 else [np.int64, np.int32, np.uint32]))(v)
    if kind == "real":
        lo = -1e6 if spec[1] is None else spec[1]
        hi = 1e6 if spec[2] is None else spec[2]
        v = draw(st.floats(lo, hi, exclude_min=spec[3], exclude_max=spec[4]))
        return draw(st.sampled_from([np.float64, np.float32]))(v)
    if kind == "bool":
        return np.bool_(draw(st.booleans()))
    if kind == "reals":
        return tuple(_numpy_scalar(spec[1], draw) for _ in range(draw(st.integers(0, 2))))
    if kind == "seedseq":
        return tuple(np.int64(s) for s in draw(st.lists(st.integers(0, SEED_MAX),
                                                        min_size=2, max_size=2)))
    return None


NUMERIC = [(p, f, c, m) for p, f, c, m in PATHS
           if SPECS[c][f][0] in ("int", "real", "bool", "reals", "seedseq")]


@pytest.mark.parametrize("path, field, cls, make", NUMERIC,
                         ids=[f"{p}.{f}" for p, f, _, _ in NUMERIC])
@FAST
@given(data=st.data())
def test_numpy_scalars_are_accepted_and_normalised(path, field, cls, make, data):
    """A NumPy scalar behaves exactly as the Python number it holds; stored plain."""
    spec = SPECS[cls][field]
    value = _numpy_scalar(spec, data.draw)
    if not valid(spec, value):        # float32 rounding onto an open bound
        return
    plain = (tuple(float(x) for x in value) if spec[0] == "reals" else
             tuple(int(x) for x in value) if spec[0] == "seedseq" else value.item())
    try:
        expected = make(plain)
    except ValueError:                # a cross-field rule refuses both alike
        with pytest.raises(ValueError):
            make(value)
        return
    obj = make(value)
    stored = getattr(obj, field)
    assert stored == getattr(expected, field)
    assert type(stored) is type(getattr(expected, field))
    if cls is rp.RunParameters:       # holds arrays: no == or hash
        return
    assert obj == expected and hash(obj) == hash(expected)
    if hasattr(obj, "to_dict"):
        json.dumps(obj.to_dict())


def test_numpy_scalars_in_the_reported_cases():
    cfg = T.TrainConfig(learning_rate=np.float32(0.1), epochs=np.int64(6),
                        monitor=np.bool_(False), model=ModelConfig(n_hidden=np.int64(6)))
    assert type(cfg.learning_rate) is float and type(cfg.epochs) is int
    assert cfg.monitor is False and type(cfg.model.n_hidden) is int
    assert T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    hash(cfg)
    c = cmp.CompareConfig(rbm_learning_rates=[np.float64(0.01)], n_seeds=np.int32(3))
    assert c.rbm_learning_rates == (0.01,) and type(c.n_seeds) is int
    json.dumps(c.to_dict())


@pytest.mark.parametrize("value", ["no", "false", "off", 0, 1, None, [True]])
def test_string_or_int_booleans_are_refused(value):
    """``"centering": "no"`` once trained WITH centering; now it is an error."""
    with pytest.raises(TypeError, match="centering must be true or false"):
        T.TrainConfig.from_dict({"model": {"centering": value}})
    with pytest.raises(TypeError, match="monitor must be true or false"):
        T.TrainConfig.from_dict({"monitor": value})


@pytest.mark.parametrize("cls, field", [(T.TrainConfig, "gradient"), (T.TrainConfig, "family"),
                                        (ModelConfig, "hidden"), (ModelConfig, "recognition"),
                                        (cmp.CompareConfig, "sample_start")])
def test_choices_refuse_non_strings_and_list_the_choices(cls, field):
    for bad in (3, None, ["paper"], b"onehot"):
        with pytest.raises(TypeError, match=f"{field} must be one of '") as info:
            build(cls, field, bad)
        for c in SPECS[cls][field][1]:
            assert repr(c) in str(info.value)


def test_messages_name_the_field_the_value_and_the_fix():
    with pytest.raises(TypeError) as info:
        T.TrainConfig(learning_rate="abc")
    assert str(info.value) == ("learning_rate must be a positive finite number, got 'abc' "
                               "(str); e.g. learning_rate=0.1 (TrainConfig.learning_rate)")
    with pytest.raises(ValueError, match=r"rmsprop_decay must be a number in \[0, 1\), "
                                         r"got 1\.5; e\.g\. rmsprop_decay=0\.9"):
        T.TrainConfig(rmsprop_decay=1.5)
    with pytest.raises(TypeError, match="epochs must be an integer from 1 to"):
        T.TrainConfig(epochs=True)
    with pytest.raises(ValueError, match="step counter is int32"):
        T.TrainConfig(epochs=2 ** 20, steps_per_epoch=2 ** 12)


# ----------------------------------------------------------------------------- seeds

SEED_ITEM = st.one_of(st.integers(-3, 6),
                      st.sampled_from([2 ** 32 - 1, 2 ** 32, 2 ** 40, -2 ** 40]),
                      st.builds(np.int64, st.integers(-2, 6)),
                      st.builds(np.uint32, st.integers(0, 6)), st.booleans(), st.just(1.0),
                      st.just("1"), st.none())


@settings(max_examples=200, deadline=None)
@given(values=st.lists(SEED_ITEM, max_size=5))
def test_seeds_rule(values):
    ints = all(_int(v) for v in values)
    in_range = ints and all(0 <= v <= SEED_MAX for v in values)
    ok = bool(values) and in_range and len({int(v) for v in values}) == len(values)
    if ok:
        out = V.seeds("seeds", values)
        assert out == [int(v) for v in values] and all(type(v) is int for v in out)
        return
    with pytest.raises(ValueError, match="seeds") as info:
        V.seeds("seeds", values)
    msg = str(info.value)
    if values and ints and not in_range:
        bad = next(int(v) for v in values if not 0 <= v <= SEED_MAX)
        assert str(bad) in msg and "2**32" in msg
    elif values and in_range:
        assert "distinct" in msg


def test_seeds_from_arrays_ranges_and_junk():
    assert V.seeds("seeds", range(3)) == [0, 1, 2]
    assert V.seeds("seeds", np.arange(3, dtype=np.uint64)) == [0, 1, 2]
    for bad in (5, "012", None, np.zeros((2, 2), int), np.array([0.0, 1.0]), {0: 1}, True):
        with pytest.raises(ValueError, match="seeds must be a non-empty 1-D sequence of ints"):
            V.seeds("seeds", bad)
    with pytest.raises(ValueError, match=r"4294967296"):
        V.seeds("seeds", [0, 2 ** 32])       # would wrap onto seed 0
    with pytest.raises(ValueError, match=r"distinct .*\[3\] repeated"):
        V.seeds("seeds", [3, 1, 3])
    assert V.seeds("seeds", [3, 3], unique=False) == [3, 3]


def test_training_entry_points_check_seeds_before_compiling():
    x = (np.random.default_rng(0).random((40, 8)) < 0.5).astype(np.float32)
    cfg = T.TrainConfig(epochs=1, steps_per_epoch=1, chain_length=2, batch_min=2, batch_max=4)
    for fn in (T.train_ensemble, T.init_ensemble_state):
        for bad, phrase in (([0, 0], "distinct"), ([2 ** 32], "4294967296"), ([-1], "-1"),
                            ([True], "bool"), (["0"], "str")):
            with pytest.raises(ValueError, match="seeds") as info:
                fn(bad, x, cfg)
            assert phrase in str(info.value)
    with pytest.raises(ValueError, match="distinct"):
        sweep.expand(cfg, {"lr": [0.1]}, [1, 1])
