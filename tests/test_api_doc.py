"""docs/API.md against the code: every documented function signature equals the real one
(``inspect.signature``: parameter names and order, positional / keyword-only / ``*args`` /
``**kwargs``, which have defaults and their values), every documented name exists, every
documented constant has its documented value.

The document's format: under a module heading ``## `ncl.x` — ...`` a markdown table whose
first column holds the entries, each a code span: ``name(arg, kw=default, *, opt=None)``
(a signature), ``name`` (a class, constant or function named without its arguments) or,
in a row whose first cell is ``constants``, ``NAME`` / ``NAME = value`` in the second.
In a signature ``…`` (or ``...``) stands for arguments left out (``f(...)``: any; ``f(a,
…)``: ``a`` first, then others) and ``name=…`` for a default left out. Code spans after
an arrow (``→ Result(fields)``, what is returned) or in parentheses (``(`ValueError`)``,
a base class) are not entries. The top-level re-export list (``import ncl``) is checked
too.

All mismatches are reported at once, in one failure, each naming its entry."""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass

import pytest

from tests.helpers import REPO

API_MD = REPO / "docs" / "API.md"
ELLIPSIS = ("…", "...")
_MODULE_HEADING = re.compile(r"^##\s+`(ncl(?:\.\w+)*)`")
_SIGNATURE = re.compile(r"^([A-Za-z_]\w*)\s*\((.*)\)$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_CONSTANT = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(.+)$")
_MISSING = object()


@dataclass(frozen=True)
class Entry:
    module: str
    line: int
    text: str           # the code span as written
    name: str
    args: str | None    # the text between the parentheses; None: a bare name
    value: str | None = None  # a documented constant's value

    def __str__(self):
        return f"docs/API.md:{self.line} `{self.module}`: `{self.text}`"


# --------------------------------------------------------------------------- #
# Parsing the document
# --------------------------------------------------------------------------- #


def split_cells(row: str) -> list[str]:
    """Cells of a markdown table row; ``\\|`` is a literal bar, not a separator."""
    cells = re.split(r"(?<!\\)\|", row.strip())
    if cells and cells[0].strip() == "":
        cells = cells[1:]
    if cells and cells[-1].strip() == "":
        cells = cells[:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def top_level_spans(cell: str) -> list[str]:
    """The code spans of ``cell`` that are entries: those before an arrow ``→`` and outside
    parentheses (parentheses inside a code span do not count)."""
    spans, depth = [], 0
    for i, part in enumerate(cell.split("`")):
        if i % 2 == 1:  # inside a code span
            if depth == 0:
                spans.append(part.strip())
            continue
        for ch in part:
            if ch == "→":
                return spans
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(depth - 1, 0)
    return spans


def parse_api(text: str):
    """``(entries, top_level_names, problems)``: the documented entries of each module
    section, the names of the ``import ncl`` re-export list, and entries that could not
    be parsed."""
    entries, problems, top_level = [], [], []
    module = None
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        if line.startswith("#"):
            m = _MODULE_HEADING.match(line)
            module = m.group(1) if m else None
            continue
        if line.startswith("Top-level re-exports"):
            para = []
            for follow in lines[lineno - 1:]:
                if not follow.strip():
                    break
                para.append(follow)
            para_text = " ".join(para)
            top_level = re.findall(r"`([A-Za-z_]\w*)`", para_text.split(":", 1)[1])
            continue
        if module is None or not line.lstrip().startswith("|"):
            continue
        cells = split_cells(line)
        if not cells or cells[0] == "name" or set(cells[0]) <= set("-: "):
            continue  # header or separator row
        if cells[0] == "constants":
            for span in top_level_spans(cells[1] if len(cells) > 1 else ""):
                c = _CONSTANT.match(span)
                if c:
                    entries.append(Entry(module, lineno, span, c.group(1), None, c.group(2)))
                elif _NAME.match(span):
                    entries.append(Entry(module, lineno, span, span, None))
                else:
                    problems.append(f"docs/API.md:{lineno} `{module}`: cannot parse constant "
                                    f"`{span}`")
            continue
        for span in top_level_spans(cells[0]):
            s = _SIGNATURE.match(span)
            if s:
                entries.append(Entry(module, lineno, span, s.group(1), s.group(2)))
            elif _NAME.match(span):
                entries.append(Entry(module, lineno, span, span, None))
            else:
                problems.append(f"docs/API.md:{lineno} `{module}`: cannot parse entry `{span}` "
                                "(expected `name` or `name(arguments)`)")
    return entries, top_level, problems


def split_args(args: str) -> list[str]:
    """Split an argument list at its top-level commas (brackets and quotes respected)."""
    out, depth, quote, cur = [], 0, None, ""
    for ch in args:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


@dataclass(frozen=True)
class DocParam:
    name: str
    kind: str            # "positional", "keyword", "var_positional", "var_keyword"
    default: str | None  # the documented default's text; None: no default


def parse_params(args: str):
    """``(params, open_ended, error)`` of a documented argument list; ``open_ended``: it
    contains ``…`` (more arguments than those named)."""
    params, open_ended, keyword_only = [], False, False
    for item in split_args(args):
        if item in ELLIPSIS:
            open_ended = True
        elif item == "*":
            keyword_only = True
        elif item.startswith("**"):
            params.append(DocParam(item[2:], "var_keyword", None))
        elif item.startswith("*"):
            params.append(DocParam(item[1:], "var_positional", None))
            keyword_only = True
        else:
            name, eq, default = item.partition("=")
            name = name.strip()
            if not _NAME.match(name):
                return params, open_ended, f"cannot parse argument {item!r}"
            params.append(DocParam(name, "keyword" if keyword_only else "positional",
                                   default.strip() if eq else None))
    return params, open_ended, None


# --------------------------------------------------------------------------- #
# Comparing with the code
# --------------------------------------------------------------------------- #

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def _equal(a, b) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):  # True is not 1
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 (arrays and other values without a boolean ==)
        return False


def default_problem(doc: str, real, module) -> str | None:
    """Why the documented default text ``doc`` is not the real default ``real``."""
    if doc in ELLIPSIS:
        return None
    try:
        value = ast.literal_eval(doc)
    except (ValueError, SyntaxError):
        try:
            value = eval(doc, dict(vars(module)))  # the repository's own docs
        except Exception as e:  # noqa: BLE001 (reported as a mismatch)
            if doc == getattr(real, "__name__", None) or doc == repr(real):
                return None
            return f"cannot evaluate the documented default {doc!r} ({type(e).__name__}: {e})"
    if _equal(value, real):
        return None
    return f"documented default {doc}, real default {real!r}"


def signature_problems(entry: Entry, obj, module) -> list[str]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError) as e:
        return [f"no signature to compare ({e})"]
    doc_params, open_ended, error = parse_params(entry.args)
    if error:
        return [error]
    if open_ended and not doc_params:
        return []  # f(...): any arguments
    real = list(sig.parameters.values())
    real_by_name = {p.name: p for p in real}
    doc_names = [p.name for p in doc_params]
    problems = []
    if open_ended:
        missing = [n for n in doc_names if n not in real_by_name]
        if missing:
            problems.append(f"no argument(s) {', '.join(missing)}")
        # the named arguments keep their relative order
        order = [n for n in (p.name for p in real) if n in doc_names]
        if not missing and order != doc_names:
            problems.append(f"argument order: documented {doc_names}, real {order}")
    elif doc_names != [p.name for p in real]:
        problems.append(f"arguments: documented ({', '.join(doc_names)}), "
                        f"real ({', '.join(p.name for p in real)})")
    for d in doc_params:
        r = real_by_name.get(d.name)
        if r is None:
            continue
        if _KINDS[r.kind] != d.kind:
            problems.append(f"{d.name}: documented {d.kind.replace('_', '-')}, real "
                            f"{_KINDS[r.kind].replace('_', '-')}")
        if d.kind.startswith("var_"):
            continue
        if d.default is None and r.default is not inspect.Parameter.empty:
            problems.append(f"{d.name}: documented without a default, real default "
                            f"{r.default!r}")
        elif d.default is not None and r.default is inspect.Parameter.empty:
            problems.append(f"{d.name}: documented default {d.default}, real has none")
        elif d.default is not None:
            why = default_problem(d.default, r.default, module)
            if why:
                problems.append(f"{d.name}: {why}")
    if problems:
        problems.insert(0, f"real signature {entry.name}{sig}")
    return problems


def api_mismatches() -> tuple[list[str], list[Entry]]:
    entries, top_level, problems = parse_api(API_MD.read_text(encoding="utf-8"))
    modules, out = {}, list(problems)
    for entry in entries:
        if entry.module not in modules:
            try:
                modules[entry.module] = importlib.import_module(entry.module)
            except Exception as e:  # noqa: BLE001 (reported as a mismatch)
                modules[entry.module] = None
                out.append(f"docs/API.md:{entry.line}: module `{entry.module}` cannot be "
                           f"imported ({type(e).__name__}: {e})")
        module = modules[entry.module]
        if module is None:
            continue
        obj = getattr(module, entry.name, _MISSING)
        if obj is _MISSING:
            out.append(f"{entry}: `{entry.module}` has no attribute `{entry.name}`")
            continue
        if entry.value is not None:
            why = default_problem(entry.value, obj, module)
            if why:
                out.append(f"{entry}: {why.replace('default', 'value')}")
        elif entry.args is not None:
            problems = signature_problems(entry, obj, module)
            if problems:
                out.append(f"{entry}:\n      " + "\n      ".join(problems))
    import ncl
    for name in top_level:
        if not hasattr(ncl, name):
            out.append(f"docs/API.md top-level re-exports: `ncl` has no attribute `{name}`")
    return out, entries


def test_api_doc_is_parsed():
    """The parser finds the document's entries (a format change must not make the
    signature check vacuous)."""
    entries, top_level, _ = parse_api(API_MD.read_text(encoding="utf-8"))
    sections = re.findall(r"^##\s+`(ncl(?:\.\w+)*)`", API_MD.read_text(encoding="utf-8"),
                          re.MULTILINE)
    assert len(sections) >= 8, sections
    per_module = {m: [e for e in entries if e.module == m] for m in sections}
    empty = [m for m, es in per_module.items() if not es]
    assert not empty, f"docs/API.md sections without parsed entries: {empty}"
    assert sum(e.args is not None for e in entries) >= 100, len(entries)
    assert "train_ensemble" in top_level, top_level


def test_parser_on_examples():
    cell = ("`f(a, b=(1, 2), *, c=None)`, `g` → `Result(x, y)` "
            "`Err` (`ValueError`)")
    assert top_level_spans(cell) == ["f(a, b=(1, 2), *, c=None)", "g"]
    assert top_level_spans("`E1`, `E2` (`ValueError`), `E3` (`RuntimeError`)") == [
        "E1", "E2", "E3"]
    assert split_cells(r'| `f(x="a"\|"b")` | text |') == ['`f(x="a"|"b")`', "text"]
    params, open_ended, err = parse_params('x, y="a, b", *, z=…, **kw')
    assert err is None and not open_ended
    assert [(p.name, p.kind, p.default) for p in params] == [
        ("x", "positional", None), ("y", "positional", '"a, b"'), ("z", "keyword", "…"),
        ("kw", "var_keyword", None)]
    assert parse_params("a, …")[1] and parse_params("...")[:2] == ([], True)

    def h(a, b=(0, 1), *, c="x", **kw):
        pass

    e = Entry("m", 1, "h(...)", "h", "a, b=(0, 1), *, c=\"x\", **kw")
    assert signature_problems(e, h, inspect.getmodule(h)) == []
    bad = Entry("m", 1, "h(...)", "h", "a, b=(0, 2), c=\"x\"")
    found = "\n".join(signature_problems(bad, h, inspect.getmodule(h)))
    assert "b: documented default (0, 2)" in found and "c: documented positional" in found
    assert "arguments: documented (a, b, c), real (a, b, c, kw)" in found


def test_api_doc_signatures_match_the_code():
    """Every entry of docs/API.md against the code; all mismatches in one message."""
    mismatches, _ = api_mismatches()
    if mismatches:
        pytest.fail(f"docs/API.md disagrees with the code in {len(mismatches)} place(s):\n  "
                    + "\n  ".join(mismatches), pytrace=False)
