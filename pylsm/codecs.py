"""Key and value codecs: how Python objects become the bytes pylsm stores.

``pylsm.open(path, key_codec=..., value_codec=...)`` takes a built-in name or any object with
``encode(obj) -> bytes`` and ``decode(bytes) -> obj``:

=========  ==========================================================================================
``None``   raw bytes-like objects, as without a codec (the default; no cost)
``"str"``  ``str`` as UTF-8; keys sort by code point
``"tuple"`` tuples of None, bytes, str, int, float, bool and nested tuples, encoded so that byte order
           is tuple order (below): ``db[("user", 42)]``, ``db.items(prefix=("user",))``
``"json"`` any JSON value (``json.dumps`` with sorted keys, compact separators)
``"pickle"`` any picklable object (protocol 5); for values: a pickle is not a canonical key
=========  ==========================================================================================

The tuple encoding (each element is self-delimiting, so the encoding of a tuple is the
concatenation of its elements' and a tuple's encoding is a prefix of every longer tuple that
starts with it):

* Elements of one type sort as Python sorts them: ints numerically (negative and big ones too),
  floats numerically (``-0.0`` is stored as ``0.0``; NaN is refused), str by code point, bytes
  bytewise, False before True, tuples element by element with a shorter prefix first.
* Elements of different types at one position sort by type, in this fixed order:
  ``None < bytes < str < tuple < int < float < bool``.  Python itself does not order most of
  these pairs; it does order int against float and bool against int, and there this encoding
  keeps types apart instead (``(1,) < (0.5,)`` here), so mix them at one position only if that
  order is what you want.  ``True`` and ``1`` are different keys.

Type codes (one byte each): None 0x00; bytes 0x01 and str 0x02, then the data with each 0x00
written as 0x00 0xFF, then 0x00; nested tuple 0x05, its elements (a None inside as 0x00 0xFF),
then 0x00; negative int 0x13, zero 0x14, positive int 0x15, each but zero followed by the
magnitude's byte length (one byte, or 0xFF and 8 bytes from 255 on; inverted for negatives) and
the magnitude big-endian (inverted for negatives); float 0x21 and the IEEE-754 double big-endian
with the sign bit flipped (all bits for negatives); False 0x26; True 0x27.
"""
from __future__ import annotations

import json as _json
import math
import pickle as _pickle
import struct
from typing import Any, List, Protocol, Tuple, Union, runtime_checkable

__all__ = ["Codec", "StrCodec", "TupleCodec", "JsonCodec", "PickleCodec", "pack", "unpack", "lookup"]


@runtime_checkable
class Codec(Protocol):
    """What a codec provides: ``encode(obj) -> bytes`` and ``decode(bytes) -> obj``."""

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class StrCodec:
    """``str`` as UTF-8 (lone surrogates pass through, so any str round-trips)."""

    name = "str"

    @staticmethod
    def encode(obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise TypeError(f"the str codec takes str, not {type(obj).__name__}")
        return obj.encode("utf-8", "surrogatepass")

    @staticmethod
    def decode(data: bytes) -> str:
        return data.decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return "pylsm.codecs.StrCodec()"


class JsonCodec:
    """Any JSON value; dict keys sorted and compact separators, so equal values encode equally."""

    name = "json"

    @staticmethod
    def encode(obj: Any) -> bytes:
        return _json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False).encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> Any:
        return _json.loads(data)

    def __repr__(self) -> str:
        return "pylsm.codecs.JsonCodec()"


class PickleCodec:
    """Any picklable object (protocol 5).  Only unpickle databases you trust, as with any pickle."""

    name = "pickle"

    @staticmethod
    def encode(obj: Any) -> bytes:
        return _pickle.dumps(obj, protocol=5)

    @staticmethod
    def decode(data: bytes) -> Any:
        return _pickle.loads(data)

    def __repr__(self) -> str:
        return "pylsm.codecs.PickleCodec()"


# ---- the order-preserving tuple encoding ------------------------------------------------------

_NONE, _BYTES, _STR, _NESTED = 0x00, 0x01, 0x02, 0x05
_NEG, _ZERO, _POS = 0x13, 0x14, 0x15
_FLOAT, _FALSE, _TRUE = 0x21, 0x26, 0x27
_END = 0x00
_ESC = b"\x00\xff"
_DOUBLE = struct.Struct(">d")
_U64 = struct.Struct(">Q")


def _length(n: int, out: bytearray, invert: bool) -> None:
    if n < 0xFF:
        out.append(0xFF - n if invert else n)
    else:
        out.append(0x00 if invert else 0xFF)
        out += _U64.pack(~n & 0xFFFF_FFFF_FFFF_FFFF if invert else n)


def _encode_into(t: Tuple[Any, ...], out: bytearray, nested: bool) -> None:
    for x in t:
        if x is None:
            out += _ESC if nested else b"\x00"
        elif x is True:
            out.append(_TRUE)
        elif x is False:
            out.append(_FALSE)
        elif isinstance(x, int):
            if x == 0:
                out.append(_ZERO)
            elif x > 0:
                n = (x.bit_length() + 7) // 8
                out.append(_POS)
                _length(n, out, False)
                out += x.to_bytes(n, "big")
            else:
                m = -x
                n = (m.bit_length() + 7) // 8
                out.append(_NEG)
                _length(n, out, True)
                out += ((1 << (8 * n)) - 1 - m).to_bytes(n, "big")
        elif isinstance(x, str):
            out.append(_STR)
            out += x.encode("utf-8", "surrogatepass").replace(b"\x00", _ESC)
            out.append(_END)
        elif isinstance(x, (bytes, bytearray, memoryview)):
            out.append(_BYTES)
            out += bytes(x).replace(b"\x00", _ESC)
            out.append(_END)
        elif isinstance(x, float):
            if math.isnan(x):
                raise ValueError("the tuple codec cannot order NaN")
            (bits,) = _U64.unpack(_DOUBLE.pack(x + 0.0))  # + 0.0 turns -0.0 into 0.0
            bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
            out.append(_FLOAT)
            out += _U64.pack(bits)
        elif isinstance(x, tuple):
            out.append(_NESTED)
            _encode_into(x, out, True)
            out.append(_END)
        else:
            raise TypeError(f"the tuple codec cannot encode {type(x).__name__} "
                            "(None, bytes, str, int, float, bool and tuples can be)")


def pack(t: Tuple[Any, ...]) -> bytes:
    """The order-preserving encoding of a tuple (see the module's documentation)."""
    if not isinstance(t, tuple):
        raise TypeError(f"the tuple codec takes a tuple, not {type(t).__name__} "
                        "(write a single element as (x,))")
    out = bytearray()
    _encode_into(t, out, False)
    return bytes(out)


def _escaped_end(data: bytes, pos: int) -> Tuple[bytes, int]:
    """The unescaped bytes from pos to the terminating 0x00, and the offset after it."""
    parts = []
    while True:
        z = data.find(b"\x00", pos)
        if z < 0:
            raise ValueError("tuple codec: unterminated bytes or str element")
        parts.append(data[pos:z])
        if z + 1 < len(data) and data[z + 1] == 0xFF:
            parts.append(b"\x00")
            pos = z + 2
        else:
            return b"".join(parts), z + 1


def _decode(data: bytes, pos: int, nested: bool) -> Tuple[Tuple[Any, ...], int]:
    items: List[Any] = []
    n = len(data)
    while pos < n:
        code = data[pos]
        pos += 1
        if code == _NONE:
            if nested:
                if pos < n and data[pos] == 0xFF:
                    items.append(None)
                    pos += 1
                    continue
                return tuple(items), pos  # the nested tuple's end
            items.append(None)
        elif code == _BYTES:
            b, pos = _escaped_end(data, pos)
            items.append(b)
        elif code == _STR:
            b, pos = _escaped_end(data, pos)
            items.append(b.decode("utf-8", "surrogatepass"))
        elif code == _ZERO:
            items.append(0)
        elif code in (_POS, _NEG):
            if pos >= n:
                raise ValueError("tuple codec: truncated int")
            lb = data[pos]
            pos += 1
            neg = code == _NEG
            if lb == (0x00 if neg else 0xFF):
                (ln,) = _U64.unpack_from(data, pos)
                pos += 8
                if neg:
                    ln = ~ln & 0xFFFF_FFFF_FFFF_FFFF
            else:
                ln = 0xFF - lb if neg else lb
            if pos + ln > n:
                raise ValueError("tuple codec: truncated int")
            v = int.from_bytes(data[pos:pos + ln], "big")
            pos += ln
            items.append(-((1 << (8 * ln)) - 1 - v) if neg else v)
        elif code == _FLOAT:
            if pos + 8 > n:
                raise ValueError("tuple codec: truncated float")
            (bits,) = _U64.unpack_from(data, pos)
            pos += 8
            bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFF_FFFF_FFFF_FFFF
            items.append(_DOUBLE.unpack(_U64.pack(bits))[0])
        elif code == _FALSE:
            items.append(False)
        elif code == _TRUE:
            items.append(True)
        elif code == _NESTED:
            t, pos = _decode(data, pos, True)
            items.append(t)
        else:
            raise ValueError(f"tuple codec: unknown type code 0x{code:02x} at offset {pos - 1}")
    if nested:
        raise ValueError("tuple codec: unterminated nested tuple")
    return tuple(items), pos


def unpack(data: bytes) -> Tuple[Any, ...]:
    """The tuple that pack() encoded as data; ValueError if data is not such an encoding."""
    t, _ = _decode(bytes(data), 0, False)
    return t


class TupleCodec:
    """Tuples in an order-preserving encoding: byte order of the keys is tuple order."""

    name = "tuple"
    encode = staticmethod(pack)
    decode = staticmethod(unpack)

    def __repr__(self) -> str:
        return "pylsm.codecs.TupleCodec()"


_BUILTIN = {"str": StrCodec(), "tuple": TupleCodec(), "json": JsonCodec(), "pickle": PickleCodec()}


def lookup(codec: Union[None, str, Codec], option: str) -> Any:
    """None, a codec object, or the built-in codec of that name; TypeError/ValueError otherwise."""
    if codec is None:
        return None
    if isinstance(codec, str):
        try:
            return _BUILTIN[codec]
        except KeyError:
            raise ValueError(f"{option}: unknown codec {codec!r}; use one of "
                             f"{sorted(_BUILTIN)}, None, or an object with encode() and decode()") from None
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise TypeError(f"{option}: a codec needs encode(obj) -> bytes and decode(bytes) -> obj; "
                        f"{type(codec).__name__} has not both")
    return codec
