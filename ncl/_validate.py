"""One type-and-range rule per config field, shared by the Python API, ``--config`` files
and the command line (a leaf module: it imports nothing from ncl).

Each rule ``rule(name, value, *, where=..., example=..., **options)`` returns the value
normalised to a plain Python ``int``/``float``/``bool``/``str``/``tuple`` (NumPy scalars
are accepted and converted, so configs stay hashable and ``to_dict`` stays JSON-able),
or raises ``TypeError`` (wrong type) / ``ValueError`` (out of range) with a message that
starts with the field name, e.g.::

    learning_rate must be a positive finite number, got 'abc' (str); e.g.
    learning_rate=0.1 (TrainConfig.learning_rate)

The message starts with the field name so that the command line can prefix it with the
option that set the field (``--lr: learning_rate must be ...``).

A config applies its rules with :func:`check_fields` from ``__post_init__``: one rule per
dataclass field, taken from a ``{field: (rule, options)}`` table; cross-field rules
(``batch_min <= batch_max`` ...) stay in the config.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping

import numpy as np

INT32_MAX = 2 ** 31 - 1
"""Default upper bound of integer fields: counts become loop lengths, static shapes or
int32 counters in the compiled programs."""

SEED_LIMIT = 2 ** 32
"""Seeds are used modulo 2**32 by ``jax.random.key``; larger ones would silently wrap."""


def _got(value, with_type: bool = True) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"got {text} ({type(value).__name__})" if with_type else f"got {text}"


def _fail(exc, name, what, value, *, where="", example=None, label=None, hint=None,
          with_type=True):
    """Raise ``exc`` with the standard message."""
    msg = f"{label or name} must be {what}, {_got(value, with_type)}"
    if hint:
        msg += f"; {hint}"
    elif example is not None:
        msg += f"; e.g. {name}={example!r}"
    if where:
        msg += f" ({where}.{name})"
    raise exc(msg)


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


def integer(name: str, value, min: int | None = None, max: int | None = INT32_MAX, *,
            where: str = "", example=None, label: str | None = None) -> int:
    """An integer in ``[min, max]`` (NumPy integers accepted; bools and floats are not)."""
    opts = dict(where=where, example=example, label=label)
    if not _is_int(value):
        bounds = (f" from {min} to {max}" if min is not None and max is not None else
                  f" at least {min}" if min is not None else
                  f" at most {max}" if max is not None else "")
        _fail(TypeError, name, f"an integer{bounds}", value, **opts)
    value = int(value)
    if min is not None and value < min:
        _fail(ValueError, name, f"at least {min}", value, with_type=False, **opts)
    if max is not None and value > max:
        _fail(ValueError, name, f"at most {max}", value, with_type=False, **opts)
    return value


def _interval(min, max, min_open, max_open) -> str:
    if min == 0 and max is None:
        return "a positive finite number" if min_open else "a non-negative finite number"
    if min is None and max is None:
        return "a finite number"
    lo = "(-inf" if min is None else ("(" if min_open else "[") + f"{min:g}"
    hi = "inf)" if max is None else f"{max:g}" + (")" if max_open else "]")
    return f"a number in {lo}, {hi}"


def real(name: str, value, min: float | None = None, max: float | None = None, *,
         min_open: bool = False, max_open: bool = False, where: str = "", example=None,
         label: str | None = None) -> float:
    """A finite real number in the interval from ``min`` to ``max`` (open ends with
    ``min_open``/``max_open``); ints and NumPy scalars are accepted, bools are not."""
    what = _interval(min, max, min_open, max_open)
    opts = dict(where=where, example=example, label=label)
    if _is_bool(value) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        _fail(TypeError, name, what, value, **opts)
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):
        _fail(ValueError, name, what, value, **opts)
    if not math.isfinite(number) or (
            min is not None and (number <= min if min_open else number < min)) or (
            max is not None and (number >= max if max_open else number > max)):
        _fail(ValueError, name, what, value, with_type=False, **opts)
    return number


def boolean(name: str, value, *, optional: bool = False, where: str = "", example=None,
            label: str | None = None) -> bool | None:
    """``True`` or ``False`` (NumPy bools accepted; strings such as ``"no"`` and ints are
    not); ``None`` too if ``optional``."""
    if optional and value is None:
        return None
    if not _is_bool(value):
        what = "true or false" + (" or null (None)" if optional else "") + " (a boolean)"
        _fail(TypeError, name, what, value, where=where, label=label,
              hint=f"write {name}=true or {name}=false in a config file, not a string")
    return bool(value)


def choice(name: str, value, choices, *, where: str = "", example=None,
           label: str | None = None) -> str:
    """One of the strings ``choices``."""
    what = "one of " + ", ".join(repr(c) for c in choices)
    opts = dict(where=where, example=example, label=label)
    if not isinstance(value, str):
        _fail(TypeError, name, what, value, **opts)
    if value not in choices:
        _fail(ValueError, name, what, value, with_type=False, **opts)
    return str(value)


def text(name: str, value, *, where: str = "", example=None,
         label: str | None = None) -> str:
    """A non-empty string."""
    opts = dict(where=where, example=example, label=label)
    if not isinstance(value, str):
        _fail(TypeError, name, "a non-empty string", value, **opts)
    if not value:
        _fail(ValueError, name, "a non-empty string", value, with_type=False, **opts)
    return str(value)


def instance(name: str, value, cls, *, where: str = "", example=None,
             label: str | None = None):
    """An instance of ``cls`` (a class or a tuple of classes), returned unchanged."""
    if not isinstance(value, cls):
        names = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
        _fail(TypeError, name, f"a {names}", value, where=where, label=label)
    return value


def mapping(name: str, value, *, where: str = "", example=None,
            label: str | None = None) -> dict:
    """A dict (any mapping, returned unchanged)."""
    if not isinstance(value, Mapping):
        _fail(TypeError, name, "a dict", value, where=where, label=label)
    return value


def array(name: str, value, ndim: int, *, where: str = "", example=None,
          label: str | None = None):
    """A real-valued NumPy or JAX array with ``ndim`` axes, returned unchanged."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    what = f"a {ndim}-D numeric array"
    if shape is None or dtype is None or _is_bool(value) or isinstance(value, (str, bytes)):
        _fail(TypeError, name, what, value, where=where, label=label)
    if len(shape) != ndim or not (np.issubdtype(dtype, np.floating)
                                  or np.issubdtype(dtype, np.integer)):
        _fail(ValueError, name, f"{what} (got shape {tuple(shape)}, dtype {dtype})", value,
              where=where, label=label)
    return value


def real_tuple(name: str, values, min: float | None = None, max: float | None = None, *,
               min_open: bool = False, max_open: bool = False, where: str = "",
               example=None, label: str | None = None) -> tuple:
    """A tuple (or list) of :func:`real` numbers, returned as a tuple of floats."""
    if not isinstance(values, (tuple, list)):
        what = f"a tuple of {_interval(min, max, min_open, max_open)}s"
        _fail(TypeError, name, what, values, where=where, example=example, label=label)
    return tuple(real(f"{name}[{i}]", v, min, max, min_open=min_open, max_open=max_open,
                      where=where, label=None if label is None else f"{label}[{i}]")
                 for i, v in enumerate(values))


def seed(name: str, value, *, where: str = "", example=None,
         label: str | None = None) -> int:
    """One seed: an integer in ``[0, 2**32)`` (``jax.random.key`` uses it modulo 2**32)."""
    return integer(name, value, 0, SEED_LIMIT - 1, where=where, example=example, label=label)


def seeds(name: str, values, *, unique: bool = True, where: str = "") -> list[int]:
    """A non-empty 1-D sequence of seeds, returned as a list of Python ints.

    Each seed is an integer (NumPy integers accepted, bools not) in ``[0, 2**32)``:
    ``jax.random.key`` takes seeds modulo 2**32, so a larger or negative one would
    silently train the same member as another seed. With ``unique`` (the default) a
    repeated seed is refused too: it would train the same member twice. Every problem,
    a wrong type included, is a ``ValueError`` (what ``ensemble_keys`` always raised and
    what the command line turns into an error exit).
    """
    prefix = f"{where}.{name}" if where else name
    if isinstance(values, (str, bytes, Mapping)) or _is_bool(values) or values is None:
        raise ValueError(f"{prefix} must be a non-empty 1-D sequence of ints, "
                        f"{_got(values)}; e.g. {name}=[0, 1, 2]")
    shape = getattr(values, "shape", None)
    if shape is not None:                    # NumPy / JAX array
        dtype = getattr(values, "dtype", None)
        if len(shape) != 1 or not np.issubdtype(dtype, np.integer):
            raise ValueError(f"{prefix} must be a non-empty 1-D sequence of ints, got an "
                             f"array of shape {tuple(shape)} and dtype {dtype}")
        items = list(np.asarray(values))
    else:
        try:
            items = list(values)
        except TypeError:
            raise ValueError(f"{prefix} must be a non-empty 1-D sequence of ints, "
                            f"{_got(values)}; e.g. {name}=[0, 1, 2]") from None
    if not items:
        raise ValueError(f"{prefix} must be a non-empty 1-D sequence of ints, got "
                         f"{values!r}; e.g. {name}=[0, 1, 2]")
    bad_type = [(i, v) for i, v in enumerate(items) if not _is_int(v)]
    if bad_type:
        i, v = bad_type[0]
        raise ValueError(f"{prefix} must be a non-empty 1-D sequence of ints, but {name}[{i}] "
                        f"is {v!r} ({type(v).__name__})")
    out = [int(v) for v in items]
    bad = [v for v in out if not 0 <= v < SEED_LIMIT]
    if bad:
        raise ValueError(f"{prefix} must lie in [0, 2**32) (jax.random.key takes seeds "
                         f"modulo 2**32, so these would wrap onto other seeds): "
                         f"{bad[:5]}{' ...' if len(bad) > 5 else ''}")
    if unique and len(set(out)) != len(out):
        seen, dup = set(), []
        for v in out:
            if v in seen and v not in dup:
                dup.append(v)
            seen.add(v)
        raise ValueError(f"{prefix} must be distinct (a repeated seed trains the same member "
                         f"twice): {dup[:5]}{' ...' if len(dup) > 5 else ''} repeated")
    return out


def check_fields(obj, rules: Mapping) -> None:
    """Apply one rule per dataclass field of ``obj`` and store the normalised values.

    ``rules`` maps every field name to ``(rule, options)``; the rule is called as
    ``rule(name, value, where=<class name>, example=<field default>, **options)``.
    A field without a rule (or a rule without a field) is a programming error
    (``RuntimeError``), so a new field cannot go unchecked.
    """
    where = type(obj).__name__
    fields = dataclasses.fields(obj)
    names = [f.name for f in fields]
    if set(names) != set(rules):
        raise RuntimeError(f"{where}: fields without a rule {sorted(set(names) - set(rules))}"
                           f", rules without a field {sorted(set(rules) - set(names))}")
    for f in fields:
        rule, options = rules[f.name]
        example = None if f.default is dataclasses.MISSING else f.default
        value = rule(f.name, getattr(obj, f.name), where=where, example=example, **options)
        object.__setattr__(obj, f.name, value)
