"""Is a model's function call right? The AST rules of the Berkeley Function-Calling Leaderboard (BFCL).

`check(functions, calls, possible_answer, category)` judges decoded calls against BFCL's ground truth
and returns a `CheckResult`: a verdict, the kind of failure, and a message that says what was wrong.
The verdict agrees with BFCL's own checker (bfcl-eval 2026.3.23) case for case; `tests/test_checker.py`
holds the two side by side on BFCL's data. The rules, as BFCL applies them:

Ground truth. `possible_answer` is a list of `{function_name: {param: [acceptable values]}}`. A
parameter is right when its value matches one acceptable value; `""` among them means the parameter
may be left out. A parameter of the answer that is neither given nor optional is missing, even when
the function docs call it optional; one the answer does not mention is unexpected, even when the docs
define it.

Categories. A name containing "irrelevance" wants no call at all (an empty list, or anything that
is not a list of calls); "relevance" wants at least one. Otherwise: "parallel" (so also
"parallel_multiple", "live_parallel") wants exactly as many calls as the answer, in any order: each
expected call, in turn, takes the first not-yet-taken call that matches it (greedily, as BFCL does).
"multiple" wants exactly as many calls and judges the first against the first expected call, with the
docs of the function the answer names. Anything else is "simple": exactly one call, judged with the
first function doc. "java" and "javascript" in the name switch on those languages' value rules.

One call, in this order: the name must equal the doc's name (with `dots_to_underscores`, as BFCL does
for models whose APIs forbid dots in names, the doc's dots become underscores first); every parameter
the docs require must be there; every parameter given must be in both the docs and the answer, and
pass the type rule and then the value rule; every parameter of the answer not given must be optional.

Types (Python). Doc types map to Python types: string, any -> str; integer -> int; float -> float;
boolean -> bool; array, tuple -> list; dict -> dict. Types compare exactly (a bool is no int). An int
is accepted for a float, and a tuple for a tuple-typed parameter; a tuple is not a list elsewhere. A
value of another type than the doc's is still accepted when it has the type of the answer's first
acceptable value: the answer holds a variable name (a string) where the doc wants, say, a dict; such a
value is compared exactly, with no normalisation. Arrays and tuples check their items one level deep:
some acceptable value must be a list such that every item has the doc's item type or the type of that
list's first item; an acceptable value that is not a list (such as the optional marker) lets any items
through. Beyond BFCL, which stops on other docs: JSON Schema's number -> float and object -> dict, an
array without an item type takes any items, and a missing or unknown type skips the type rule (the
value must still equal an acceptable one).

Values. Strings compare after normalisation: spaces and the characters `,./-_*^` removed, lower case,
single quotes made double ("April 1, 2024" equals "april 1 2024"). Lists compare element by element
after normalising their string elements. Dicts compare key by key against each acceptable dict
(string values normalised, keys the acceptable dict lacks refused, its keys not given allowed only
when optional); lists of dicts compare dict by dict, in order. Everything else compares with `==`.

Java and JavaScript. Every value must be a string of source text; it is converted by the declared
type (for example Java `5L` -> 5 for long, `new int[]{1, 2}` -> [1, 2] for Array; JavaScript `7n` -> 7
for Bigint, `[1, 'a']` -> [1, "a"] for array), and text that does not convert stays a string. The
converted value then goes through the type and value rules above, without the int-for-float allowance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rftfast.data.record import Call

CATEGORIES = (
    "ok",
    "parse_failure",
    "wrong_count",
    "wrong_function",
    "missing_required",
    "unexpected_parameter",
    "wrong_type",
    "wrong_value",
)
"""The kinds of verdict, `CheckResult.category`: "ok" or why the calls are wrong."""

KINDS = ("simple", "multiple", "parallel", "irrelevance", "relevance")
"""How calls are matched; a BFCL category name picks one by the words it contains (see `category_kind`)."""

LANGUAGES = ("python", "java", "javascript")

PYTHON_TYPES = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
    # JSON Schema spellings, for tools that are not BFCL's own (BFCL maps them the same way).
    "number": float,
    "object": dict,
}
JAVA_TYPES = {
    "byte": int,
    "short": int,
    "integer": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": bool,
    "char": str,
    "String": str,
    "any": str,
    "Array": list,
    "ArrayList": list,
    "HashMap": dict,
    "Hashtable": dict,
    "Set": set,
    "Queue": list,
    "Stack": list,
}
JAVASCRIPT_TYPES = {
    "String": str,
    "integer": int,
    "float": float,
    "Bigint": int,
    "Boolean": bool,
    "dict": dict,
    "array": list,
    "any": str,
}
TYPE_TABLES = {"python": PYTHON_TYPES, "java": JAVA_TYPES, "javascript": JAVASCRIPT_TYPES}
# Doc types whose items are type-checked too (one level deep).
ITEM_CHECKED_TYPES = {"python": ("array", "tuple"), "java": ("Array", "ArrayList"), "javascript": ("array",)}


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one model answer: `category` is "ok" when valid, otherwise the kind of failure."""

    valid: bool
    category: str
    message: str

    def __bool__(self) -> bool:
        return self.valid


class _Mismatch(Exception):
    """Raised deep inside the rules; `check` turns it into a failing CheckResult."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category
        self.message = message


def check(
    functions: list[dict] | dict,
    calls: Any,
    possible_answer: list[dict] | None,
    category: str,
    *,
    dots_to_underscores: bool = False,
) -> CheckResult:
    """Judge decoded `calls` against BFCL's `possible_answer` for a BFCL test `category`.

    `functions`: function docs in BFCL's dialect, bare or in the OpenAI `{"type": "function", ...}` wrapper.
    `calls`: a list of `Call`s, or BFCL's decoded form `[{name: {param: value}}]` (also OpenAI tool calls);
    anything else is a parse failure. `possible_answer` may be None for (ir)relevance categories.
    `dots_to_underscores`: the model's API cannot put dots in function names, so the expected name's
    dots are read as underscores (BFCL's per-model `underscore_to_dot` switch).
    Raises ValueError for a category it does not know, docs or a possible answer of the wrong shape, or
    docs that do not fit the answer; malformed `calls` (the model's output) never raise, they fail.
    """
    kind, language = category_kind(category), category_language(category)
    decoded = _decoded_calls(calls)
    if kind == "irrelevance":
        return _check_no_call(decoded)
    if kind == "relevance":
        return _check_some_call(decoded)
    if isinstance(decoded, str):
        return CheckResult(False, "parse_failure", decoded)
    expected = _expected_calls(possible_answer, kind)
    docs = _function_docs(functions)
    rules = _CallRules(language, dots_to_underscores)
    try:
        if kind == "parallel":
            _check_parallel(docs, decoded, expected, rules)
        elif kind == "multiple":
            _check_multiple(docs, decoded, expected, rules)
        else:
            _check_simple(docs, decoded, expected, rules)
    except _Mismatch as failure:
        return CheckResult(False, failure.category, failure.message)
    return CheckResult(True, "ok", "")


def category_kind(category: str) -> str:
    """How a BFCL category matches calls: the words it contains decide, as in BFCL's runner."""
    if not isinstance(category, str):
        raise ValueError(f"category must be a string, got {type(category).__name__}")
    for kind in ("irrelevance", "relevance", "parallel", "multiple", "simple"):
        if kind in category:
            return kind
    if category in LANGUAGES:
        return "simple"
    raise ValueError(f"unknown BFCL category {category!r}: expected a name containing one of {KINDS}")


def category_language(category: str) -> str:
    """Which language's value rules apply: "javascript" and "java" in the name say so, else Python."""
    if "javascript" in category:
        return "javascript"
    return "java" if "java" in category else "python"


# --- Input shapes -----------------------------------------------------------------------------------


def _function_docs(functions: list[dict] | dict) -> list[dict]:
    """Bare BFCL function docs, unwrapping the OpenAI `{"type": "function", "function": ...}` form."""
    items = functions if isinstance(functions, list) else [functions]
    docs = []
    for item in items:
        doc = item["function"] if isinstance(item, dict) and isinstance(item.get("function"), dict) else item
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            raise ValueError(f"function doc without a name: {item!r:.120}")
        _check_doc_shape(doc)
        docs.append(doc)
    if not docs:
        raise ValueError("no function docs to judge the calls against")
    return docs


def _check_doc_shape(doc: dict) -> None:
    """Raise ValueError unless the parts of a doc the rules read have the shapes they expect.

    Falsy parts (a missing or empty `parameters`, `properties`, `required`, `items`) mean none, as before.
    """
    where = f"function doc {doc['name']!r}"
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError(f"{where}: parameters must be an object, got {parameters!r:.80}")
    properties = parameters.get("properties") or {}
    if not isinstance(properties, dict):
        raise ValueError(f"{where}: parameters.properties must be an object, got {properties!r:.80}")
    required = parameters.get("required") or []
    if not isinstance(required, list) or not all(isinstance(param, str) for param in required):
        raise ValueError(f"{where}: parameters.required must be a list of names, got {required!r:.80}")
    for param, spec in properties.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: parameter {param!r} must be an object, got {spec!r:.80}")
        if spec.get("items") and not isinstance(spec["items"], dict):
            raise ValueError(f"{where}: parameter {param!r}: items must be an object, got {spec['items']!r:.80}")


def _expected_calls(possible_answer: Any, kind: str) -> list[tuple[str, dict]]:
    """BFCL's `[{name: {param: [acceptable values]}}]` as (name, acceptable) pairs; ValueError if malformed."""
    if not isinstance(possible_answer, list) or not possible_answer:
        raise ValueError(f"a {kind} test needs a non-empty list of expected calls, got {possible_answer!r:.120}")
    expected = []
    for index, item in enumerate(possible_answer):
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"expected call {index} must be {{name: {{param: [values]}}}}, got {item!r:.120}")
        ((name, acceptable),) = item.items()
        if not isinstance(name, str) or not isinstance(acceptable, dict):
            raise ValueError(f"expected call {index} must be {{name: {{param: [values]}}}}, got {item!r:.120}")
        for param, options in acceptable.items():
            if not isinstance(options, list):
                raise ValueError(
                    f"expected call {index} ({name}): the acceptable values of {param!r} must be a "
                    f"list, got {options!r:.80}"
                )
        expected.append((name, acceptable))
    return expected


def _decoded_calls(calls: Any) -> list[tuple[str, dict]] | str:
    """Calls as (name, arguments) pairs, or a string saying why they are not a list of calls."""
    if not isinstance(calls, list):
        return f"expected a list of calls, got {type(calls).__name__}"
    decoded = []
    for index, call in enumerate(calls):
        pair = _decoded_call(call)
        if pair is None:
            return f"call {index} is not a function call: {call!r:.120}"
        decoded.append(pair)
    return decoded


def _decoded_call(call: Any) -> tuple[str, dict] | None:
    if isinstance(call, Call):
        return (call.name, call.arguments) if isinstance(call.arguments, dict) else None
    if not isinstance(call, dict):
        return None
    # BFCL's decoded form has exactly one key, the name; its value holds the arguments.
    if len(call) == 1:
        name, arguments = next(iter(call.items()))
        if isinstance(arguments, dict):
            return name, arguments
    if isinstance(call.get("name"), str) or isinstance(call.get("function"), dict):
        try:
            parsed = Call.from_json(call)
        except ValueError:
            return None
        return parsed.name, parsed.arguments
    return None


# --- Relevance ----------------------------------------------------------------------------------------


def _check_no_call(decoded: list | str) -> CheckResult:
    # Output that is not a list of calls counts as no call, as in BFCL: the model answered in words.
    if isinstance(decoded, str) or not decoded:
        return CheckResult(True, "ok", "")
    return CheckResult(False, "wrong_count", f"expected no function call, got {len(decoded)}")


def _check_some_call(decoded: list | str) -> CheckResult:
    if isinstance(decoded, str):
        return CheckResult(False, "parse_failure", decoded)
    if not decoded:
        return CheckResult(False, "wrong_count", "expected a function call, got none")
    return CheckResult(True, "ok", "")


# --- Matching calls to the answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class _CallRules:
    language: str
    dots_to_underscores: bool


def _check_simple(docs: list[dict], calls: list, expected: list[tuple[str, dict]], rules: _CallRules) -> None:
    if len(calls) != 1:
        raise _Mismatch("wrong_count", f"expected 1 call, got {len(calls)}")
    # BFCL judges a simple test against its first (only) function doc.
    _check_call(docs[0], calls[0], expected[0][1], rules)


def _check_multiple(docs: list[dict], calls: list, expected: list[tuple[str, dict]], rules: _CallRules) -> None:
    if len(calls) != len(expected):
        raise _Mismatch("wrong_count", f"expected {len(expected)} call(s), got {len(calls)}")
    # The answer holds one call; BFCL judges the first call only.
    name, expected_args = expected[0]
    _check_call(_doc_named(docs, name), calls[0], expected_args, rules)


def _check_parallel(docs: list[dict], calls: list, expected: list[tuple[str, dict]], rules: _CallRules) -> None:
    if len(calls) != len(expected):
        raise _Mismatch("wrong_count", f"expected {len(expected)} call(s), got {len(calls)}")
    taken: set[int] = set()
    for expected_index, (name, expected_args) in enumerate(expected):
        doc = _doc_named(docs, name)
        failures = []
        for index, call in enumerate(calls):
            if index in taken:
                continue
            try:
                _check_call(doc, call, expected_args, rules)
            except _Mismatch as failure:
                failures.append(failure)
                continue
            taken.add(index)  # first match wins, never revisited: BFCL's greedy matching
            break
        else:
            raise _closest_failure(failures, expected_index, name)


def _closest_failure(failures: list[_Mismatch], expected_index: int, name: str) -> _Mismatch:
    """Why expected call `expected_index` found no match: the first call with its name says best."""
    named = [failure for failure in failures if failure.category != "wrong_function"]
    reason = named[0] if named else _Mismatch("wrong_function", f"no call to {name!r}")
    return _Mismatch(reason.category, f"no call matches expected call {expected_index} ({name}): {reason.message}")


def _doc_named(docs: list[dict], name: str) -> dict:
    for doc in docs:
        if doc["name"] == name:
            return doc
    raise ValueError(f"the answer calls {name!r}, which is not among the function docs")


# --- One call --------------------------------------------------------------------------------------------


def _check_call(doc: dict, call: tuple[str, dict], expected_args: dict, rules: _CallRules) -> None:
    name, arguments = call
    _check_name(doc["name"], name, rules)
    parameters = doc.get("parameters") or {}
    specs = parameters.get("properties") or {}
    for param in parameters.get("required") or []:
        if param not in arguments:
            raise _Mismatch("missing_required", f"{name}: missing required parameter {param!r}")
    for param, value in arguments.items():
        if param not in specs or param not in expected_args:
            raise _Mismatch("unexpected_parameter", f"{name}: unexpected parameter {param!r}")
        _check_argument(param, value, specs[param], expected_args[param], rules.language)
    for param, acceptable in expected_args.items():
        if param not in arguments and "" not in acceptable:
            raise _Mismatch("missing_required", f"{name}: missing parameter {param!r}, which the answer requires")


def _check_name(doc_name: str, name: str, rules: _CallRules) -> None:
    expected = doc_name.replace(".", "_") if rules.dots_to_underscores else doc_name
    if name != expected:
        raise _Mismatch("wrong_function", f"expected a call to {expected!r}, got {name!r}")


def _check_argument(param: str, value: Any, spec: dict, acceptable: list, language: str) -> None:
    """Type rule, then value rule, for one parameter's value."""
    declared = spec.get("type")
    table = TYPE_TABLES[language]
    if not isinstance(declared, str) or declared not in table:
        if language != "python":
            raise ValueError(f"parameter {param!r}: type {declared!r} is not a {language} type BFCL knows")
        # Beyond BFCL (which stops on such docs): a type it does not know, or none, checks the value only.
        _check_member(param, value, acceptable)
        return
    expected_type = table[declared]
    item_type = _item_type(param, spec, language)
    value = _as_checked_value(param, value, declared, spec, language)
    from_answer_type = _check_type(param, value, acceptable, declared, expected_type, item_type)
    if from_answer_type:
        # A value typed like the answer rather than the doc (a variable name) is compared as it is.
        _check_member(param, value, acceptable)
    elif expected_type is dict:
        _check_dict(param, value, acceptable)
    elif expected_type is list and item_type is dict:
        _check_list_of_dicts(param, value, acceptable)
    elif expected_type is str:
        _check_string(param, value, acceptable)
    elif expected_type is list:
        _check_list(param, value, acceptable)
    else:
        _check_member(param, value, acceptable)


def _item_type(param: str, spec: dict, language: str) -> type | None:
    if spec["type"] not in ITEM_CHECKED_TYPES[language]:
        return None
    item_declared = (spec.get("items") or {}).get("type")
    if item_declared is None and language == "python":
        return None  # beyond BFCL's data: an array without an item type takes any items
    if not isinstance(item_declared, str) or item_declared not in TYPE_TABLES[language]:
        raise ValueError(f"parameter {param!r}: item type {item_declared!r} is not a {language} type BFCL knows")
    return TYPE_TABLES[language][item_declared]


def _as_checked_value(param: str, value: Any, declared: str, spec: dict, language: str) -> Any:
    """The value the type rule sees: source text converted (Java, JavaScript), or Python's allowances."""
    if language != "python":
        if type(value) is not str:
            raise _Mismatch("wrong_type", f"{param!r}: expected {language} source text (a string), got {value!r:.80}")
        item_declared = (spec.get("items") or {}).get("type") if declared in ITEM_CHECKED_TYPES[language] else None
        convert = _java_value if language == "java" else _javascript_value
        return convert(value, declared, item_declared)
    # A tuple in the answer became a list when it went through JSON, so a tuple value compares as a list.
    if declared == "tuple" and type(value) is tuple:
        return list(value)
    # Python widens an int where a float is wanted.
    if declared in ("float", "number") and type(value) is int:
        return float(value)
    return value


# --- Type rule -------------------------------------------------------------------------------------------


def _check_type(param: str, value: Any, acceptable: list, declared: str, expected: type, item_type: type | None):
    """Raise wrong_type unless `value` has the doc's type (items one level deep) or the answer's type.

    Returns True when the value should be compared as the answer writes it (a variable name where the
    doc wants another type), False when it goes through the doc type's value rule.
    """
    answer_type = _answer_type(acceptable)
    if type(value) is expected:  # exact: a bool is not an int here
        if item_type is not None and not _items_fit_some_answer(value, acceptable, item_type):
            raise _Mismatch("wrong_type", f"{param!r}: items of {value!r:.80} are not all {item_type.__name__}")
        return answer_type is not None and answer_type is not expected
    if answer_type is not None and type(value) is answer_type:
        return True
    raise _Mismatch("wrong_type", f"{param!r}: expected {declared}, got {type(value).__name__} {value!r:.80}")


def _answer_type(acceptable: list) -> type | None:
    """The type of the first acceptable value that is not the optional marker."""
    for option in acceptable:
        if not _is_optional_marker(option):
            return type(option)
    return None


def _is_optional_marker(option: Any) -> bool:
    return type(option) is str and option == ""


def _items_fit_some_answer(items: list, acceptable: list, item_type: type) -> bool:
    # An acceptable value that is not a list (the optional marker, a variable name) sets no item type.
    return any(type(option) is not list or _items_fit(items, option, item_type) for option in acceptable)


def _items_fit(items: list, acceptable_items: list, item_type: type) -> bool:
    answer_item_type = _answer_type(acceptable_items)
    return all(type(item) is item_type or type(item) is answer_item_type for item in items)


# --- Value rule ------------------------------------------------------------------------------------------

_IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")


def normalize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and `,./-_*^`, lower-case, single quotes to double."""
    return _IGNORED_IN_STRINGS.sub("", text).lower().replace("'", '"')


def _normalized(value: Any) -> Any:
    return normalize_string(value) if type(value) is str else value


def _check_member(param: str, value: Any, acceptable: list) -> None:
    if value not in acceptable:
        raise _Mismatch("wrong_value", f"{param!r}: {value!r:.80} is not one of {acceptable!r:.160}")


def _check_string(param: str, value: str, acceptable: list) -> None:
    options = [normalize_string(option) for option in acceptable if type(option) is str]
    if normalize_string(value) not in options:
        raise _Mismatch("wrong_value", f"{param!r}: {value!r:.80} is not one of {acceptable!r:.160} (normalised)")


def _check_list(param: str, value: list, acceptable: list) -> None:
    normalized = [_normalized(item) for item in value]
    # Each acceptable value is taken item by item (the optional marker "" reads as an empty list).
    options = [[_normalized(item) for item in option] for option in acceptable if type(option) in (list, str)]
    if normalized not in options:
        raise _Mismatch("wrong_value", f"{param!r}: {value!r:.80} is not one of {acceptable!r:.160}")


def _check_dict(param: str, value: dict, acceptable: list) -> None:
    failure = _Mismatch("wrong_value", f"{param!r}: no acceptable dict to compare with")
    for option in acceptable:
        if _is_optional_marker(option):
            continue
        failure = _dict_mismatch(param, value, option)
        if failure is None:
            return
    raise failure


def _dict_mismatch(param: str, value: dict, option: Any) -> _Mismatch | None:
    """Why dict `value` does not match the acceptable dict `option` ({key: [acceptable values]}), or None."""
    if not isinstance(option, dict) or not isinstance(value, dict):
        return _Mismatch("wrong_value", f"{param!r}: {value!r:.80} does not equal {option!r:.80}")
    for key, choices in option.items():
        # Malformed ground truth, not a wrong answer. A string passes: BFCL's Java data holds some
        # (`{"format": "epoch_millis"}`) and BFCL compares against its characters, as happens below.
        if not isinstance(choices, (list, str)):
            raise ValueError(
                f"parameter {param!r}: the acceptable values of key {key!r} must be a list, got {choices!r:.80}"
            )
    for key, item in value.items():
        if key not in option:
            return _Mismatch("wrong_value", f"{param!r}: unexpected key {key!r}")
        if _normalized(item) not in [_normalized(choice) for choice in option[key]]:
            return _Mismatch("wrong_value", f"{param!r}[{key!r}]: {item!r:.80} is not one of {option[key]!r:.160}")
    for key, choices in option.items():
        if key not in value and "" not in choices:
            return _Mismatch("wrong_value", f"{param!r}: missing key {key!r}")
    return None


def _check_list_of_dicts(param: str, value: list, acceptable: list) -> None:
    failure = _Mismatch("wrong_value", f"{param!r}: no acceptable list of dicts to compare with")
    for option in acceptable:
        if type(option) not in (list, str):
            continue  # BFCL cannot compare a list of dicts with such an answer; no match
        if len(value) != len(option):
            failure = _Mismatch("wrong_value", f"{param!r}: expected {len(option)} dicts, got {len(value)}")
            continue
        # Dicts pair up in order; the optional marker "" stands for an empty list here.
        failures = (_dict_mismatch(param, item, expected) for item, expected in zip(value, option))
        failure = next((f for f in failures if f is not None), None)
        if failure is None:
            return
    raise failure


# --- Java source values ------------------------------------------------------------------------------------
# BFCL reads Java arguments as source text and converts them by the declared type; text that does not
# fit the type's pattern stays a string (and then usually fails the type rule).

_JAVA_INTEGER = re.compile(r"^-?\d+$")
_JAVA_FLOAT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$")
_JAVA_DOUBLE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_JAVA_LONG = re.compile(r"^-?\d+[lL]$")
_BOOLEAN = re.compile(r"(true|false)\Z")
_TRAILING_F = re.compile(r"[fF]$")
_TRAILING_L = re.compile(r"[lL]$")

# A declared scalar type: (the pattern BFCL requires of its text, the conversion of a text that fits).
_JAVA_SCALARS: dict[str, tuple[re.Pattern, Callable[[str], Any]]] = {
    "byte": (_JAVA_INTEGER, int),
    "short": (_JAVA_INTEGER, int),
    "integer": (_JAVA_INTEGER, int),
    "float": (_JAVA_FLOAT, lambda text: float(_TRAILING_F.sub("", text))),
    "double": (_JAVA_DOUBLE, float),
    "long": (_JAVA_LONG, lambda text: int(_TRAILING_L.sub("", text))),
    "boolean": (_BOOLEAN, lambda text: text == "true"),
}


def _scalar(scalars: dict, text: str, declared: str) -> Any:
    pattern, convert = scalars[declared]
    return convert(text) if pattern.match(text) else text


def _java_value(text: str, declared: str, item_declared: str | None = None) -> Any:
    if declared in _JAVA_SCALARS:
        return _scalar(_JAVA_SCALARS, text, declared)
    if declared == "Array":
        return _java_array(text, item_declared)
    if declared == "ArrayList":
        return _java_arraylist(text, item_declared)
    if declared == "HashMap":
        return _java_hashmap(text)
    if declared in ("char", "String", "any"):
        return text  # BFCL keeps a char's quotes: its char pattern never matches
    raise ValueError(f"BFCL does not convert Java {declared} values")


_JAVA_ARRAY = re.compile(r"new\s+\w+\[\]\s*\{(.*?)\}")


def _java_array(text: str, item_declared: str | None) -> Any:
    match = _JAVA_ARRAY.search(text)
    if not match:
        return text
    parts = [part.strip() for part in match.group(1).split(",") if part.strip()]
    return [_java_item(part, item_declared) for part in parts]


_JAVA_ARRAYLIST_AS_LIST = re.compile(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)")
_JAVA_ARRAYLIST_ADDS = re.compile(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", re.DOTALL)
_JAVA_ADD = re.compile(r"add\((.+?)\)")
_JAVA_ARRAYLIST_EMPTY = re.compile(r"new\s+ArrayList<\w*>\(\)")


def _java_arraylist(text: str, item_declared: str | None) -> Any:
    match = _JAVA_ARRAYLIST_AS_LIST.search(text)
    if match:
        return [_java_list_element(part.strip(), item_declared) for part in match.group(1).split(",")]
    match = _JAVA_ARRAYLIST_ADDS.search(text)
    if match:
        return [_java_list_element(part.strip(), item_declared) for part in _JAVA_ADD.findall(match.group(1))]
    return [] if _JAVA_ARRAYLIST_EMPTY.search(text) else text


def _java_list_element(text: str, item_declared: str | None) -> Any:
    if item_declared in ("char", "String"):
        return text[1:-1]  # drop the quotes
    return _java_item(text, item_declared)


def _java_item(text: str, item_declared: str | None) -> Any:
    return _java_value(text, item_declared) if item_declared else _java_literal(text)


_JAVA_HASHMAP_PUTS = re.compile(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", re.DOTALL)
_JAVA_PUT = re.compile(r"put\(\"(.*?)\",\s*(.*?)\)")
_JAVA_HASHMAP_EMPTY = re.compile(r"new\s+HashMap<.*?>\s*\(\)")


def _java_hashmap(text: str) -> Any:
    match = _JAVA_HASHMAP_PUTS.search(text)
    if match:
        return {key: _java_literal(value.strip()) for key, value in _JAVA_PUT.findall(match.group(1))}
    return {} if _JAVA_HASHMAP_EMPTY.search(text) else text


def _java_literal(text: str) -> Any:
    """A Java literal of unknown type: boolean, "string", long, float, int or double, else the text."""
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if _JAVA_LONG.match(text):
        return int(text[:-1])
    if _JAVA_FLOAT.match(text):
        return float(_TRAILING_F.sub("", text))
    return _python_number(text)


def _python_number(text: str) -> Any:
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


# --- JavaScript source values ------------------------------------------------------------------------------

_JS_SCALARS: dict[str, tuple[re.Pattern, Callable[[str], Any]]] = {
    "integer": (re.compile(r"^-?\d+$"), int),
    "float": (re.compile(r"^-?\d+(\.\d+)?$"), float),
    "Bigint": (re.compile(r"^-?\d+n$"), lambda text: int(text[:-1])),  # the pattern ends in the n suffix
    "Boolean": (_BOOLEAN, lambda text: text == "true"),
}


def _javascript_value(text: str, declared: str, item_declared: str | None = None) -> Any:
    if declared in _JS_SCALARS:
        return _scalar(_JS_SCALARS, text, declared)
    if declared == "String":
        return text[1:-1] if _is_quoted(text) else text
    if declared == "dict":
        return _javascript_object(text.strip())
    if declared == "array":
        return _javascript_array(text.strip(), item_declared)
    if declared == "any":
        return text
    raise ValueError(f"BFCL does not convert JavaScript {declared} values")


def _is_quoted(text: str) -> bool:
    return (text.startswith('"') and text.endswith('"')) or (text.startswith("'") and text.endswith("'"))


_JS_NESTED_ARRAY = re.compile(r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)")
_JS_ARRAY = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")


def _javascript_array(text: str, item_declared: str | None) -> Any:
    try:
        nested = _JS_NESTED_ARRAY.match(text)
        if nested:
            return _javascript_array_of_arrays(nested.group(0))
        match = _JS_ARRAY.match(text)
        if not match:
            return text
        inside = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
        parts = [part.strip() for part in inside.split(",")] if inside else []
        if item_declared:
            return [_javascript_value(part, item_declared) for part in parts]
        return [_javascript_literal(part) for part in parts]
    except Exception:  # BFCL keeps the text when conversion fails in any way
        return text


_JS_BRACKETED = re.compile(r"\[(.*?)\]")


def _javascript_array_of_arrays(text: str) -> list:
    # Each innermost bracket pair is one row; the item type is not applied to rows.
    rows = []
    for index, row in enumerate(_JS_BRACKETED.findall(text)):
        row = row.strip()
        if index == 0 and row.startswith("["):
            row = row[1:]
        rows.append([_javascript_literal(part.strip()) for part in row.split(",")])
    return rows


_JS_OBJECT = re.compile(r"\{(.*?)\}")
_JS_OBJECT_ENTRY = re.compile(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)")


def _javascript_object(text: str) -> Any:
    if text == "{}":
        return {}
    match = _JS_OBJECT.match(text)  # up to the first closing brace
    if not match:
        return text
    entries = {}
    for key, value in _JS_OBJECT_ENTRY.findall(match.group(1)):
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            entries[key.strip().strip("'\"")] = _javascript_array(value, None)
        elif value.startswith("{") and value.endswith("}"):
            entries[key.strip().strip("'\"")] = _javascript_object(value)
        else:
            entries[key.strip().strip("'\"")] = _javascript_literal(value.strip("'\""))
    return entries


def _javascript_literal(text: str) -> Any:
    """A JavaScript literal of unknown type: boolean, quoted string, int or float, else the text."""
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if _is_quoted(text):
        return text[1:-1]
    return _python_number(text)
