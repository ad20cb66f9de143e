"""JSON from users, parsed with the limits the rest of the engine relies on.

Every JSON document a request carries goes through `loads`: request bodies (DRF's parser,
`engine.parsers`), JSON form fields, and the COCO and SA-1B documents inside an import.
It refuses, as `ValidationFailed` naming the document:

* nesting deeper than MAX_DEPTH (Python's parser and everything that walks the result
  afterwards, serializers and `json.dumps` included, recurse: a few thousand brackets would
  raise RecursionError, a 500);
* NaN and Infinity (not JSON; PostgreSQL's jsonb refuses them);
* the character U+0000 in a string (PostgreSQL's text and jsonb refuse it).
"""
from __future__ import annotations

import json
import re
from itertools import accumulate

import numpy as np

from engine.errors import ValidationFailed

MAX_DEPTH = 64  # COCO and SA-1B documents nest 5 levels, a judgement's layout 3

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a bare value), without parsing it."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    if len(brackets) < 4096:  # numpy's set-up costs more than the loop
        return max(accumulate(_STEP[b] for b in brackets))
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(raw: bytes | str, *, what: str, max_depth: int = MAX_DEPTH):
    """`raw` parsed, or ValidationFailed saying what is wrong with `what` (a name the user knows:
    "the request body", "'annotations'", "coco.json")."""
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode(json.detect_encoding(raw))
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{what} is not valid JSON ({exc}).", code="invalid_json") from None
    # Fewer opening brackets than the limit cannot nest past it: most bodies skip the scan.
    if text.count("[") + text.count("{") > max_depth:
        depth = json_depth(text.encode("utf-8", "surrogatepass"))
        if depth > max_depth:
            raise ValidationFailed(f"{what} nests arrays and objects {depth} levels deep; at most {max_depth}.",
                                   code="json_too_deep")
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValidationFailed(f"{what} has a string with the character \\u0000, which cannot be stored; "
                               "remove it.", code="invalid_json")
    try:
        return _DECODER.decode(text)
    except RecursionError:  # not reached below max_depth; kept so no input can make a 500 here
        raise ValidationFailed(f"{what} nests too deep; at most {max_depth} levels.", code="json_too_deep") from None
    except ValueError as exc:  # JSONDecodeError, NaN or Infinity
        raise ValidationFailed(f"{what} is not valid JSON ({exc}).", code="invalid_json") from None
