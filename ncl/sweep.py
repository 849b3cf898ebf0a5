"""Hyperparameter sweeps as ensembles: one compiled program per shape.

A sweep is the product of a grid of settings and a list of seeds. Members that differ
only in *per-member* settings — the learning rate (an injected optax hyperparameter)
and centering on/off (the centering vector lives in each member's state) — train
together in one vmapped XLA program. Settings that change array shapes or the traced
program (T, L, the hidden representation, the recognition normalisation, the protocol
lengths) define separate groups, each compiled once. Every member's settings are
recorded next to its results, and member ``i`` equals the same settings trained alone
(``tests/test_sweep.py``).

Grid syntax (command line and :func:`parse_grid`): space-separated ``name=v1,v2,...``
with names ``lr`` (``learning_rate``), ``centering`` (on/off), ``T`` (``chain_length``),
``L`` (``n_hidden``), ``hidden``, ``recognition``, ``epochs``, ``steps_per_epoch``,
``batch_min``, ``batch_max``, ``n_chains``.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ncl import _validate as _v
from ncl.training import (History, TrainConfig, TrainState, check_data, continue_training,
                          init_ensemble_state)

# name -> (field path, parser, per-member?)
_BOOL = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False,
         "yes": True, "no": False}


def _parse_bool(text: str) -> bool:
    try:
        return _BOOL[str(text).lower()]
    except KeyError:
        raise ValueError(f"expected on/off, got {text!r}") from None


SWEEPABLE: dict[str, tuple[str, Any, bool]] = {
    "lr": ("learning_rate", float, True),
    "learning_rate": ("learning_rate", float, True),
    "centering": ("model.centering", _parse_bool, True),
    "T": ("chain_length", int, False),
    "chain_length": ("chain_length", int, False),
    "L": ("model.n_hidden", int, False),
    "n_hidden": ("model.n_hidden", int, False),
    "hidden": ("model.hidden", str, False),
    "recognition": ("model.recognition", str, False),
    "epochs": ("epochs", int, False),
    "steps_per_epoch": ("steps_per_epoch", int, False),
    "batch_min": ("batch_min", int, False),
    "batch_max": ("batch_max", int, False),
    "n_chains": ("n_chains", int, False),
}


def parse_grid(text: str) -> dict[str, list]:
    """``"lr=0.03,0.1 T=24,48 centering=on,off"`` → ``{"lr": [0.03, 0.1], ...}``.

    Raises ``ValueError`` naming an unknown setting or a value that does not parse.
    """
    grid: dict[str, list] = {}
    for item in text.split():
        if "=" not in item:
            raise ValueError(f"grid item {item!r} is not name=v1,v2,...")
        name, values = item.split("=", 1)
        if name not in SWEEPABLE:
            raise ValueError(f"unknown sweep setting {name!r}; valid: {sorted(SWEEPABLE)}")
        if name in grid or any(SWEEPABLE[n][0] == SWEEPABLE[name][0] for n in grid):
            raise ValueError(f"sweep setting {name!r} is given twice")
        parse = SWEEPABLE[name][1]
        try:
            grid[name] = [parse(v) for v in values.split(",") if v != ""]
        except ValueError as e:
            raise ValueError(f"sweep setting {name}: {e}") from None
        if not grid[name]:
            raise ValueError(f"sweep setting {name!r} has no values")
    if not grid:
        raise ValueError("empty sweep grid")
    return grid


def _with(config: TrainConfig, path: str, value) -> TrainConfig:
    if path.startswith("model."):
        return dataclasses.replace(config, model=dataclasses.replace(
            config.model, **{path[len("model."):]: value}))
    return dataclasses.replace(config, **{path: value})


@dataclasses.dataclass(frozen=True)
class SweepMember:
    """One member: its seed, the grid settings, and the full config it trains with."""

    index: int
    seed: int
    settings: tuple[tuple[str, Any], ...]
    config: TrainConfig

    def __post_init__(self):
        _v.check_fields(self, _MEMBER_RULES)

    @property
    def shape_config(self) -> TrainConfig:
        """The config of this member's compiled group (per-member settings at defaults)."""
        base = dataclasses.replace(self.config, learning_rate=TrainConfig.learning_rate)
        return _with(base, "model.centering", True)


def _settings(name: str, value, *, where: str = "", example=None) -> tuple:
    """The rule of ``SweepMember.settings``: ``(setting, value)`` pairs of known settings."""
    ok = isinstance(value, (tuple, list)) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and p[0] in SWEEPABLE
        for p in value)
    if not ok:
        raise TypeError(f"{name} must be a tuple of (setting, value) pairs with settings from "
                        f"{sorted(SWEEPABLE)}, got {value!r} ({type(value).__name__}) "
                        f"({where}.{name})")
    return tuple(value)


_MEMBER_RULES = {
    "index": (_v.integer, dict(min=0)),
    "seed": (_v.seed, {}),
    "settings": (_settings, {}),
    "config": (_v.instance, dict(cls=TrainConfig)),
}
"""One type-and-range rule per :class:`SweepMember` field (:mod:`ncl._validate`)."""


def expand(base: TrainConfig, grid: dict[str, Sequence], seeds: Sequence[int]
           ) -> list[SweepMember]:
    """All (grid point × seed) members, grid-major. Invalid combinations raise ValueError,
    values of the wrong type TypeError (the config rules); ``seeds`` must be distinct ints
    in ``[0, 2**32)`` (each grid point trains every seed once)."""
    seeds = _v.seeds("seeds", seeds)
    names = list(grid)
    members = []
    for values in itertools.product(*(grid[n] for n in names)):
        config = base
        for name, value in zip(names, values):
            config = _with(config, SWEEPABLE[name][0], value)
        for seed in seeds:
            members.append(SweepMember(len(members), int(seed), tuple(zip(names, values)),
                                       config))
    return members


def group_members(members: Sequence[SweepMember]) -> dict[TrainConfig, list[SweepMember]]:
    """Members grouped by their compiled shape config, in order of first appearance."""
    groups: dict[TrainConfig, list[SweepMember]] = {}
    for m in members:
        groups.setdefault(m.shape_config, []).append(m)
    return groups


class GroupResult(NamedTuple):
    config: TrainConfig
    members: list
    state: TrainState
    history: History


def train_sweep(members: Sequence[SweepMember], data, progress=None, devices=None
                ) -> list[GroupResult]:
    """Train every member; one compiled program per group of equal shape config.

    Per-member learning rates go into ``opt_state.hyperparams["learning_rate"]`` and a
    member without centering gets a zero centering vector; then the group trains exactly
    like :func:`ncl.training.train_ensemble` (same init, keys and program).
    ``progress(group_index, epoch, row)`` is called per group and epoch if given.
    """
    data = check_data(data)
    results = []
    for gi, (config, group) in enumerate(group_members(members).items()):
        # a group may hold one seed several times (e.g. one per learning rate): keys of
        # the members' own (validated) seeds, exactly as ensemble_keys builds them
        keys = jax.vmap(jax.random.key)(jnp.asarray([m.seed for m in group], jnp.uint32))
        state = init_ensemble_state(keys, data, config)
        lrs = jnp.asarray([m.config.learning_rate for m in group], jnp.float32)
        centred = jnp.asarray([m.config.model.centering for m in group])
        hyper = dict(state.opt_state.hyperparams, learning_rate=lrs)
        state = state._replace(
            opt_state=state.opt_state._replace(hyperparams=hyper),
            center=jnp.where(centred[:, None], state.center, 0.0))
        cb = None if progress is None else (lambda e, r, gi=gi: progress(gi, e, r))
        state, history = continue_training(state, data, config, 0, progress=cb,
                                           devices=devices)
        results.append(GroupResult(config, list(group), state, history))
    return results


def summary_rows(results: Sequence[GroupResult]) -> list[dict]:
    """One dict per member: index, group, seed, its settings, final metrics."""
    rows = []
    for gi, res in enumerate(results):
        h = {k: np.asarray(v) for k, v in res.history._asdict().items()}
        for j, m in enumerate(res.members):
            row = {"member": m.index, "group": gi, "seed": m.seed}
            row.update({k: v for k, v in m.settings})
            row.update(
                learning_rate=m.config.learning_rate, chain_length=m.config.chain_length,
                n_hidden=m.config.model.n_hidden, hidden=m.config.model.hidden,
                recognition=m.config.model.recognition, centering=m.config.model.centering,
                loglik_onthefly=float(h["loglik"][j, -1]),
                loglik_precise=float(h["loglik_precise"][j, -1]),
                sigma_rb=float(h["sigma_rb"][j, -1]),
                sigma_counts=float(h["sigma_counts"][j, -1]),
                finite=bool(h["finite"][j].all()))
            rows.append(row)
    return sorted(rows, key=lambda r: r["member"])


SWEEP_CSV, SWEEP_JSON = "sweep.csv", "sweep.json"


def save_sweep(out, results: Sequence[GroupResult], *, data_info: dict, grid: str,
               seeds: Sequence[int], base: TrainConfig, wall: float) -> list[dict]:
    """Save every group as a run (``out/group_NN``, :func:`ncl.io.save_run`, with its
    members' settings) and write ``sweep.csv`` (:func:`summary_rows`) and ``sweep.json``
    (grid, seeds, base config, wall time, rows). Returns the rows."""
    from ncl import io
    out = Path(out)
    for gi, res in enumerate(results):
        io.save_run(out / f"group_{gi:02d}", res.state, res.history, res.config,
                    seeds=[m.seed for m in res.members], data_info=data_info,
                    extra={"sweep_members": [{"member": m.index, "seed": m.seed,
                                              **dict(m.settings)} for m in res.members]})
    rows = summary_rows(results)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / SWEEP_CSV, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / SWEEP_JSON).write_text(json.dumps(
        {"grid": grid, "seeds": seeds, "base_config": base.to_dict(),
         "train_wall_seconds": wall, "members": rows}, indent=2))
    return rows


def divergence_error(rows: Sequence[dict], out) -> str | None:
    """``ncl sweep``'s error message naming the members whose training diverged
    (non-finite parameters); ``None`` when none did."""
    bad = [r for r in rows if not r["finite"]]
    if not bad:
        return None
    return (f"ncl sweep: error: training diverged (non-finite parameters) for "
            f"{len(bad)} of {len(rows)} members: "
            + ", ".join(str(r["member"]) for r in bad)
            + f" (column finite of {Path(out) / SWEEP_CSV}); lower their learning rate")
