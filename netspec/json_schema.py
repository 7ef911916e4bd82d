"""The JSON Schema of the spec format, generated from the same pydantic models that
validate specs, so it cannot drift from them."""

from __future__ import annotations

from typing import Any

from netspec.expr import FUNCTIONS
from netspec.kinds import FAMILIES, SPEC_KINDS, family_members
from netspec.spec import SpecModel

EXPRESSION = {"type": "string", "pattern": r"\$",
              "description": "an expression over $vars: + - * / // % ( ) "
                             + " ".join(FUNCTIONS)}

COMMON = {
    # (?!\n): ECMA's $ is the end of the text, but Python's (the jsonschema package)
    # also matches before a final newline
    "as": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$(?!\n)",
           "description": "a name for this layer: its module name, and a reference for "
                          "add/concat"},
    "repeat": {"anyOf": [{"type": "integer", "minimum": 0}, EXPRESSION],
               "description": "repeat this layer or block n times; $i is the index"},
    "input": {"type": "string",
              "description": "read this earlier tensor (name, in, name.i) instead of the "
                             "current one"},
    "register_before": {"type": "string",
                        "description": "register this entry's tensors before those of the "
                                       "earlier sibling entry with this name"},
}


def _options(schema: dict[str, Any]) -> dict[str, Any]:
    props = {name: {"anyOf": [p, EXPRESSION], **{k: v for k, v in p.items() if k == "description"}}
             for name, p in schema.get("properties", {}).items()}
    return {"type": "object", "properties": {**props, **COMMON}, "additionalProperties": False,
            **({"required": schema["required"]} if schema.get("required") else {}),
            **({"description": schema["description"]} if schema.get("description") else {})}


def _family(name: str, members: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A family's options (every member's, the first definition of each kept) with its
    ``kind``; a bare value is the kind: ``norm: batch``, ``act: silu``."""
    props: dict[str, Any] = {}
    for cls in members.values():
        for key, p in _options(cls.model_json_schema(by_alias=True))["properties"].items():
            props.setdefault(key, p)
    props["kind"] = {"enum": list(members)}
    options = {"type": "object", "properties": props, "required": ["kind"],
               "additionalProperties": False}
    return options, {"anyOf": [{"enum": list(members)}, {"$ref": f"#/$defs/{name}"}]}


def _layer_list() -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}}


def spec_schema() -> dict[str, Any]:
    top = SpecModel.model_json_schema(by_alias=True)
    defs: dict[str, Any] = top.pop("$defs", {})
    kinds: dict[str, Any] = {}
    for op in SPEC_KINDS:
        members = family_members(op)
        if members is not None:
            defs[op], kinds[op] = _family(op, members)
            continue
        cls = FAMILIES[op][None]
        kinds[op] = {"anyOf": [{"$ref": f"#/$defs/{op}"}, {"type": "null"}]
                     + ([{"type": ["string", "number", "array"]}] if cls.shorthand else [])}
        defs[op] = _options(cls.model_json_schema(by_alias=True))
    body = {"anyOf": [_layer_list(), {"$ref": "#/$defs/layer"}]}
    kinds["residual"] = {"type": "object", "required": ["body"], "additionalProperties": False,
                         "properties": {"body": body,
                                        "shortcut": {"anyOf": [{"enum": ["auto", "identity"]},
                                                               _layer_list()]},
                                        "combine": {"enum": ["add", "concat"]},
                                        "shortcut_first": {"type": "boolean"}, **COMMON}}
    kinds["parallel"] = {"type": "object", "required": ["branches"],
                         "additionalProperties": False,
                         "properties": {"branches": {"type": "array", "minItems": 1, "items": {
                             "anyOf": [{"const": "identity"}, _layer_list(),
                                       {"$ref": "#/$defs/layer"}]}},
                                        "combine": {"enum": ["add", "concat"]}, **COMMON}}
    kinds["dense"] = {"type": "object", "required": ["n", "body"], "additionalProperties": False,
                      "properties": {"n": {"anyOf": [{"type": "integer", "minimum": 1},
                                                     EXPRESSION]},
                                     "body": body, "combine": {"enum": ["add", "concat"]},
                                     **COMMON}}
    defs["layer"] = {
        "description": "a layer: a kind name (relu), or a one-key mapping from a kind or a "
                       "block name to its options",
        "anyOf": [
            {"type": "string"},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": kinds,
             "additionalProperties": {"type": ["object", "null"],
                                      "description": "a use of a block from blocks:"}},
        ],
    }
    top["properties"]["layers"] = _layer_list()
    block = defs.get("BlockDef")
    if block is not None:
        block["properties"]["layers"] = _layer_list()
    top["$defs"] = defs
    top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    top["title"] = "netspec spec"
    return top
