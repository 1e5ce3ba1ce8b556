"""Raw values to typed columns (text, integers, enums, booleans, durations) and the nested values that
are not the documented shape (JSON text, odd types), kept off the common path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from provkit.data.stepdetails import (
    parse_bool,
    scope_failure,
)
from provkit.data.tables.schema import BOOL, CATEGORY, DURATION, STR, TIME, _Enums
from provkit.data.tables.times import (
    _duration_ns,
    _object_array,
    _times_from_text,
    _utc_series,
    parse_graph_times,
)

# ---------------------------------------------------------------------------------------------------------
# Column conversion. Raw values become Arrow arrays as soon as they are collected (while still in the CPU
# cache); typing (times, enums, booleans) then runs vectorised over whole columns.

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_EMPTY: dict[str, Any] = {}
_Column = Any  # raw values (list), Arrow array, numpy array or pandas extension array


def _text(value: object) -> str | None:
    """Text for a value that should be a string but is not: booleans as Graph writes them, others as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value != value:
        return None  # NaN: a missing value from a pandas-based source
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _strings(values: Iterable[object]) -> pa.Array[Any]:
    """An Arrow string array (None and NaN are null); values that are not strings become text. A lone surrogate
    (JSON may spell one, "\\ud800"; UTF-8 cannot hold it) becomes U+FFFD, so one odd character costs no record."""
    try:
        return pa.array(values, type=pa.large_string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
        texts = [_text(v) for v in values]
    try:
        return pa.array(texts, type=pa.large_string())
    except UnicodeEncodeError:
        return pa.array(
            [None if t is None else _LONE_SURROGATE.sub("\ufffd", t) for t in texts], type=pa.large_string()
        )


def _integers(values: Iterable[object]) -> pa.Array[Any]:
    """An Arrow int64 array; numeric text and integral floats are accepted, anything else is null."""
    try:
        return pa.array(values, type=pa.int64())
    except (pa.ArrowTypeError, pa.ArrowInvalid, OverflowError):
        # Python ints beyond float's range would stop pandas' conversion; beyond int64 they are null anyway.
        values = [None if type(v) is int and abs(v) >= 2**62 else v for v in values]
        numbers = pd.to_numeric(pd.Series(_object_array(values), dtype=object), errors="coerce").astype(float)
        numbers = numbers.where(np.isfinite(numbers) & (numbers.abs() < 2.0**62)).round()
        integers: pa.Array[Any] = pa.array(numbers, from_pandas=True).cast(pa.int64())
        return integers


def _dictionary(values: pa.Array[Any] | pa.ChunkedArray[Any]) -> tuple[np.ndarray, list[Any]]:
    """(codes with -1 for null, distinct values) of an Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    assert isinstance(encoded, pa.DictionaryArray), "dictionary_encode of an array gives a DictionaryArray"
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _categorical(
    codes: np.ndarray, uniques: list[Any], known: Sequence[str], canon: Callable[[object], str | None]
) -> pd.Categorical:
    canonical = [canon(u) for u in uniques]
    known_set = set(known)
    categories = list(known) + sorted({c for c in canonical if c is not None and c not in known_set})
    position = {c: i for i, c in enumerate(categories)}
    # The extra trailing -1 maps code -1 (missing) to -1.
    mapping = np.array([-1 if c is None else position[c] for c in canonical] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(mapping[codes], categories=pd.Index(categories, dtype=STR))


def _booleans(codes: np.ndarray, uniques: list[Any]) -> pd.arrays.BooleanArray:
    parsed = [parse_bool(u) for u in uniques]
    truth = np.array([p is True for p in parsed] + [False], dtype=bool)
    missing = np.array([p is None for p in parsed] + [True], dtype=bool)
    return pd.arrays.BooleanArray(truth[codes], missing[codes])


def _durations(values: Iterable[object]) -> np.ndarray:
    nat = np.iinfo(np.int64).min
    ns = [_duration_ns(v) for v in values]
    return np.array([nat if v is None else v for v in ns], dtype=np.int64).view("m8[ns]")


def _buffer_view(
    buffer: pa.Buffer | None, dtype: type[np.generic], count: int = -1, offset: int = 0
) -> np.ndarray:
    """A numpy view (no copy) of an Arrow buffer."""
    if buffer is None:
        return np.zeros(0, dtype=dtype)
    # pyarrow.Buffer exports the buffer protocol; its stub does not declare __buffer__, which numpy's wants.
    view: np.ndarray = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)  # type: ignore[call-overload]
    return view


def _spread(part: pa.Array[Any], rows: np.ndarray, n: int, picks: np.ndarray | None = None) -> pa.Array[Any]:
    """A length-``n`` string array holding ``part[picks]`` (or all of ``part``) at ``rows``, null elsewhere.

    ``rows`` (and ``picks``) must be strictly increasing. The result reuses ``part``'s character buffer
    and builds only new offsets and a validity bitmap, which is much cheaper than a take().
    """
    if picks is not None:
        part = part.take(pa.array(picks, type=pa.int64()))
    if isinstance(part, pa.ChunkedArray):
        part = part.combine_chunks()
    if len(rows) == 0:
        return pa.nulls(n, pa.large_string())
    part = part.cast(pa.large_string())
    _, offsets_buffer, data_buffer = part.buffers()
    offsets = _buffer_view(offsets_buffer, np.int64, count=len(part) + 1, offset=part.offset * 8)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = np.diff(offsets)
    new_offsets = np.empty(n + 1, dtype=np.int64)
    new_offsets[0] = offsets[0]
    np.cumsum(lengths, out=new_offsets[1:])
    new_offsets[1:] += offsets[0]
    valid = np.zeros(n, dtype=bool)
    valid[rows] = part.is_valid().to_numpy(zero_copy_only=False)
    validity = pa.array(valid).buffers()[1]
    # numpy arrays export the buffer protocol; the stub's SupportPyBuffer wants __buffer__, which numpy's lacks.
    offsets_out = pa.py_buffer(new_offsets)  # type: ignore[arg-type]
    return pa.Array.from_buffers(pa.large_string(), n, [validity, offsets_out, data_buffer])


def _first_per_group(groups: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, position) of the first valid position in each group; ``groups`` must be non-decreasing."""
    positions = np.flatnonzero(valid)
    found = groups[positions]
    first = np.ones(len(found), dtype=bool)
    first[1:] = found[1:] != found[:-1]
    return found[first], positions[first]


def _column(
    values: _Column, dtype: str, enum: tuple[Sequence[str], Callable[[object], str | None]] | None
) -> Any:
    """The typed array for one column from raw values (a list) or from Arrow / numpy chunks combined."""
    if isinstance(values, list):
        if dtype == TIME:
            return parse_graph_times(values).array
        if dtype == DURATION:
            return _durations(values)
        values = _strings(values) if dtype in (STR, CATEGORY, BOOL) else _integers(values)
    if isinstance(values, np.ndarray):
        return pd.array(values, dtype=dtype)
    if dtype == STR:
        return pd.array(values, dtype=STR)
    if dtype == TIME:
        return _utc_series(_times_from_text(values)).array
    if dtype == CATEGORY:
        assert enum is not None, "category column without known values"
        return _categorical(*_dictionary(values), *enum)
    if dtype == BOOL:
        return _booleans(*_dictionary(values))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    missing = values.is_null().to_numpy(zero_copy_only=False)
    numbers = values.fill_null(0).to_numpy(zero_copy_only=False)
    return pd.arrays.IntegerArray(numbers.astype(pd.api.types.pandas_dtype(dtype).numpy_dtype), missing)


def _frame(data: dict[str, _Column], spec: dict[str, str], enums: _Enums, prefix: str = "") -> pd.DataFrame:
    """One typed DataFrame, in ``spec`` order, from raw value lists or ready arrays of equal length
    found in ``data`` under ``prefix + column name``."""
    columns = {name: _column(data[prefix + name], dtype, enums.get(name)) for name, dtype in spec.items()}
    return pd.DataFrame(columns, copy=False)


def _combine(chunks: list[Any]) -> _Column:
    """One column from its per-chunk Arrow or numpy arrays."""
    if not chunks:
        return []
    if isinstance(chunks[0], np.ndarray):
        return np.concatenate(chunks)
    return pa.chunked_array(chunks, type=chunks[0].type)


# ---------------------------------------------------------------------------------------------------------
# Nested values that are not the expected shape (kept off the common path)


def _as_dict(value: object) -> dict[str, Any]:
    """A nested object that is not a dict: JSON text is parsed (Log Analytics style), anything else is empty."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return _EMPTY
        return parsed if isinstance(parsed, dict) else _EMPTY
    return _EMPTY


def _as_list(value: object) -> list[Any] | None:
    """A nested list that is not a list: JSON text is parsed; None means absent; anything else is None."""
    if value is None:
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def _details_dict(value: object) -> dict[str, Any]:
    """Step details that are not a dict: JSON text is parsed, anything else is kept under "value"."""
    parsed = _as_dict(value)
    return {"value": value} if parsed is _EMPTY else parsed


_NO_FAILURE: tuple[str | None, str | None, str | None] = (None, None, None)


def _scope_failure(evaluation: object) -> tuple[str | None, str | None, str | None]:
    """(filter name, failed clause, its source value) from a ScopeEvaluationResult, or three Nones.

    Either shape is read (see :mod:`provkit.data.stepdetails`); the source value is only in the structured one.
    """
    failure = scope_failure(evaluation)
    if failure is None:
        return _NO_FAILURE
    return failure.filter, failure.clause, failure.value


_encode = json.JSONEncoder(check_circular=False, ensure_ascii=False, default=str).encode
_encode_string = json.encoder.encode_basestring  # the C version; same output as _encode for a str


def _details_encoder() -> Callable[[dict[str, Any]], str]:
    """A function giving the JSON text of a details dict, exactly as ``json.dumps`` writes it.

    Details are small flat dicts of strings. One-key dicts are written directly; the multi-key ones
    (scoping results) repeat a lot, so their text is cached by content. Anything unusual goes through the
    full encoder.
    """
    cache: dict[tuple[Any, ...], str] = {}
    quote = _encode_string
    encode = _encode

    def encode_details(details: dict[str, Any]) -> str:
        try:
            if len(details) == 1:
                ((key, value),) = details.items()
                return "{" + quote(key) + ": " + quote(value) + "}"
            items = tuple(details.items())
            text = cache.get(items)
            if text is None:
                text = "{" + ", ".join([quote(k) + ": " + quote(v) for k, v in items]) + "}"
                if len(cache) < 10_000:
                    cache[items] = text
            return text
        except TypeError:  # a key or value that is not a string, or an unhashable value
            return encode(details)

    return encode_details
