"""Column building: values collected per column, turned into Arrow arrays or pandas
columns in the dtypes of ``a3s_nb.frames.schema``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from . import schema
from .cost import price_table

try:  # pyarrow is optional; with it, columns are built several times faster
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # pragma: no cover - exercised by the fallback test via monkeypatch
    pa = pc = None


# ============================================================================ columns


class _Repeat:
    """A column of a few values each repeated many times (e.g. run_id per event)."""

    __slots__ = ("counts", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.counts: list[int] = []

    def add(self, value: Any, count: int) -> None:
        if count:
            self.values.append(value)
            self.counts.append(count)


def _dense(values: Any, n: int) -> list:
    if isinstance(values, _Codes):
        names = values.names
        return [None if c is None else names[c] for c in values.codes]
    if isinstance(values, _Repeat):
        out: list = []
        for value, count in zip(values.values, values.counts, strict=True):
            out += [value] * count
        return out
    if isinstance(values, dict):  # sparse: row index -> value
        out = [None] * n
        for i, v in values.items():
            out[i] = v
        return out
    return values


def _clean_strings(values: list) -> list:
    """Text as it is; any other value as its JSON, but a float NaN (which pyarrow reads as a
    null) as NA."""
    return [v if v is None or isinstance(v, str) else None if v != v else _json(v) for v in values]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _clean_ints(values: list) -> list:
    """Ints that fit int64, and floats with such an integral value (``2.0`` is 2, as
    ``load()`` reads it); anything else (``2.5``, ``true``, text, 2**63 and beyond) is NA."""
    return [_int64(v) for v in values]


def _int64(v: Any) -> int | None:
    if type(v) is float and v.is_integer():
        v = int(v)
    return v if type(v) is int and _INT64_MIN <= v <= _INT64_MAX else None


def _too_big(values: Any) -> list[tuple[int, int]]:
    """``(row, value)`` of the ints in a column that do not fit int64."""
    if isinstance(values, dict):
        items: Iterable = values.items()
    elif isinstance(values, list):
        items = enumerate(values)
    else:
        return []
    return [(i, v) for i, v in items if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX]


def _clean_floats(values: list) -> list:
    """Numbers as floats (``true`` is 1.0, as pyarrow and ``load()`` read it); else NA."""
    return [float(v) if type(v) in (int, float, bool) else None for v in values]


def _clean_bools(values: list) -> list:
    return [v if type(v) is bool else None for v in values]


def _clean_enum(values: list) -> list:
    return [v if isinstance(v, str) else None for v in values]


def _pool() -> Any:
    """The Arrow memory pool the frames allocate from: the C library's allocator.

    Measured on 5,000 sessions, pyarrow's default (mimalloc or jemalloc) spent twice the
    system time returning and re-faulting pages and peaked higher. Only the frames' own
    buffers use it; pyarrow's global default is left alone.
    """
    return pa.system_memory_pool()


def _exact_ints(items: list, typ: Any) -> Any:
    """``items`` as an int64 array when they are ints and nulls alone, else ArrowTypeError
    (the caller then cleans them). pyarrow's conversion to int64 truncates a float (2.9
    becomes 2, silently), so the type of the values is inferred first."""
    arr = pa.array(items, from_pandas=True, memory_pool=_pool())
    if arr.type == typ:
        return arr
    if arr.type == pa.null():
        return arr.cast(typ, memory_pool=_pool())
    raise pa.ArrowTypeError(f"integers expected, found {arr.type}")


def _arrow(
    values: Any,
    n: int,
    typ: Any,
    clean: Callable[[list], list],
    lost: Callable[[list[tuple[int, int]]], None] | None = None,
) -> Any:
    """A pyarrow array of ``n`` values from a dense list, a sparse dict or a _Repeat.

    Sparse and repeated columns are expanded by ``take`` in C, not element by element. A
    value of the wrong JSON type (a hand-edited file) becomes a null or, for text, JSON.
    """

    def convert(items: list) -> Any:
        try:
            if clean is _clean_ints:
                return _exact_ints(items, typ)
            return pa.array(items, type=typ, from_pandas=True, memory_pool=_pool())
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            if lost is not None and clean is _clean_ints:
                big = _too_big(values)
                if big:
                    lost(big)
            return pa.array(clean(items), type=typ, from_pandas=True, memory_pool=_pool())

    if isinstance(values, _Repeat):
        positions = np.repeat(np.arange(len(values.values), dtype=np.int64), values.counts)
        return pc.take(convert(values.values), positions, memory_pool=_pool())
    if isinstance(values, dict):
        positions = np.full(n, len(values), dtype=np.int64)
        if values:
            rows = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
            positions[rows] = np.arange(len(values), dtype=np.int64)
        return pc.take(convert([*values.values(), None]), positions, memory_pool=_pool())
    return convert(values)


# How each kind of column is held between flushes (Arrow) and how it is cleaned.
_ARROW_KINDS: dict[str, tuple[Callable[[], Any], Callable[[list], list]]] = {
    "string": (lambda: pa.large_string(), _clean_strings),
    "json": (lambda: pa.large_string(), _clean_strings),
    "int": (lambda: pa.int64(), _clean_ints),
    "float": (lambda: pa.float64(), _clean_floats),
    "timestamp": (lambda: pa.int64(), _clean_ints),
    "bool": (lambda: pa.bool_(), _clean_bools),
    "category": (lambda: pa.string(), _clean_enum),
}


def _chunk(
    col: schema.Column,
    values: Any,
    n: int,
    lost: Callable[[list[tuple[int, int]]], None] | None = None,
) -> Any:
    """One column of a flushed block of rows, as a pyarrow array."""
    if isinstance(values, _Codes):
        return pa.DictionaryArray.from_arrays(
            pa.array(values.codes, type=pa.int32()), pa.array(values.names, type=pa.string())
        )
    typ, clean = _ARROW_KINDS[col.kind]
    if isinstance(values, dict) and col.kind in ("string", "json"):
        values = _dense(values, n)  # one copy of the text, where take() would make two
    return _arrow(values, n, typ(), clean, lost)


def _string_dtype() -> pd.StringDtype:
    return pd.StringDtype("pyarrow" if pa is not None else "python")


_NAT = np.iinfo(np.int64).min


def _categories(seen: Iterable[str], known: tuple[str, ...]) -> list[str]:
    return list(known) + sorted(set(seen).difference(known))


def _finish(col: schema.Column, chunks: list) -> Any:
    """The pandas array of a column from its Arrow chunks (no copy for text)."""
    kind = col.kind
    if kind == "category":
        return _finish_category(chunks, schema.ENUMS[col.enum])
    typ, _ = _ARROW_KINDS[kind]
    arr = pa.chunked_array(chunks, type=typ())
    if kind in ("string", "json"):
        try:
            return _string_dtype().__from_arrow__(arr)
        except ValueError:  # pandas < 2.2 takes only 32-bit offsets (pa.string)
            chunks = [pc.cast(c, pa.string(), memory_pool=_pool()) for c in arr.chunks]
            arr = pa.chunked_array(chunks, type=pa.string())
            return _string_dtype().__from_arrow__(arr)
    if kind == "int":
        return pd.Int64Dtype().__from_arrow__(arr)
    if kind == "float":
        return pd.Float64Dtype().__from_arrow__(arr)
    if kind == "bool":
        return pd.BooleanDtype().__from_arrow__(arr)
    if kind == "timestamp":
        ms = arr.fill_null(_NAT).to_numpy()
        return pd.DatetimeIndex(ms.view("datetime64[ms]")).tz_localize("UTC").array
    return _finish_category(chunks, schema.ENUMS[col.enum])


def _finish_category(chunks: list, known: tuple[str, ...]) -> pd.Categorical:
    """One Categorical from chunks of strings or of dictionary codes."""
    parts = []
    for chunk in chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk, memory_pool=_pool())
        parts.append((chunk.dictionary.to_pylist(), chunk.indices))
    cats = _categories((v for names, _ in parts for v in names if v is not None), known)
    position = {c: i for i, c in enumerate(cats)}
    # the codes written in place, in the narrowest type that holds them (the one a
    # Categorical keeps): no int64 array per chunk, no concatenation, no narrowing copy
    narrow = np.int8 if len(cats) < 127 else np.int16 if len(cats) < 32767 else np.int32
    all_codes = np.empty(sum(len(indices) for _, indices in parts), dtype=narrow)
    at = 0
    for names, indices in parts:
        lookup = np.array([position.get(v, -1) for v in names] + [-1], dtype=narrow)
        if indices.null_count:  # (``fill_null`` costs a new kernel about 0.3 ms a chunk)
            indices = indices.fill_null(len(names))
        out = all_codes[at : at + len(indices)]
        np.take(lookup, indices.to_numpy(zero_copy_only=False), out=out)
        at += len(indices)
    return pd.Categorical.from_codes(all_codes, categories=cats)


def _array(col: schema.Column, values: Any, n: int) -> Any:
    """The pandas array of a whole column held in Python (when pyarrow is missing)."""
    values = _dense(values, n)
    kind = col.kind
    # every value cleaned, so that it becomes what the Arrow way makes of it
    if kind in ("string", "json"):
        return pd.array(_clean_strings(values), dtype=_string_dtype())
    if kind == "int":
        return pd.array(_clean_ints(values), dtype="Int64")
    if kind == "float":
        return pd.array(_clean_floats(values), dtype="Float64")
    if kind == "bool":
        return pd.array(_clean_bools(values), dtype="boolean")
    if kind == "timestamp":
        ms = np.array([_NAT if v is None else v for v in _clean_ints(values)], dtype=np.int64)
        return pd.DatetimeIndex(ms.view("datetime64[ms]")).tz_localize("UTC").array
    clean = _clean_enum(values)
    cats = _categories((v for v in clean if v is not None), schema.ENUMS[col.enum])
    return pd.Categorical(clean, categories=cats)


def _frame(frame: str, data: dict[str, Any], errors: list[dict]) -> pd.DataFrame:
    """The one DataFrame construction of a frame."""
    return _with_attrs(frame, pd.DataFrame(data, copy=False), errors)


def _with_attrs(frame: str, df: pd.DataFrame, errors: list[dict]) -> pd.DataFrame:
    """``df`` with the frame's ``attrs``: its name, the schema version, the errors."""
    df.attrs = {
        "frame": frame,
        "schema_version": schema.SCHEMA_VERSION,
        "errors": [dict(e) for e in errors],
    }
    if "cost_usd" in df.columns:
        df.attrs["price_table"] = price_table()
        unpriced = df["model"][df["cost_usd"].isna()]
        df.attrs["unpriced_models"] = sorted(
            {"<unknown>" if pd.isna(m) else str(m) for m in unpriced.unique()}
        )
    return df


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON text, like ``json.dumps(v, ensure_ascii=False, separators=(",", ":"))``.

    The C encoder is made once and reused: ``json.dumps`` rebuilds it on every call, which
    costs more than encoding the small objects the frames hold.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return slow

    def default(o: Any) -> Any:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    quote = json.encoder.encode_basestring  # the C one, as json.dumps uses
    try:
        encode = c_make_encoder(None, default, quote, None, ":", ",", False, False, True)
    except TypeError:  # pragma: no cover - a future CPython changed the private signature
        return slow

    def fast(value: Any) -> str:
        if isinstance(value, str):
            return quote(value)
        try:
            return "".join(encode(value, 0))
        except (TypeError, ValueError, RecursionError):
            return slow(value)

    return fast


_json = _json_encoder()


class _Codes:
    """A category column collected as integer codes (for the frame's largest enum)."""

    __slots__ = ("codes", "names")

    def __init__(self, names: list[str]):
        self.codes: list[int | None] = []
        self.names = names  # shared by every chunk of the column; only ever appended to
