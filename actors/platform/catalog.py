"""What every actor is and takes, read from the broker and the payload schemas (for ``pfd actors``,
``pfd schema`` and docs/actors.md)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Mapping
from typing import Any

import dramatiq
from pydantic import BaseModel

__all__ = ["actor_catalog", "actor_schema", "option_row", "options_of_dataclass", "payload_fields"]

_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"),
           ("minLength", "length ≥"), ("maxLength", "length ≤"), ("minItems", "items ≥"), ("maxItems", "items ≤"))


def _summary(fn: Any) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def actor_catalog(broker: dramatiq.Broker | None = None) -> list[dict[str, Any]]:
    """Every actor on the broker, by name: its queue, limits, retries, backoff and one line of what it does."""
    broker = broker or dramatiq.get_broker()
    rows = []
    for name in sorted(broker.actors):
        actor = broker.get_actor(name)
        options = actor.options
        rows.append({
            "actor": name, "module": actor.fn.__module__, "queue": actor.queue_name,
            "time_limit_s": options.get("time_limit", 0) / 1000, "max_retries": options.get("max_retries"),
            "min_backoff_s": options.get("min_backoff", 0) / 1000, "max_backoff_s": options.get("max_backoff", 0) / 1000,
            "stores_results": bool(options.get("store_results")), "periodic": str(options["periodic"]) if "periodic" in options else None,
            "summary": _summary(actor.fn),
        })
    return rows


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return defs[ref.rsplit("/", 1)[-1]] if ref else schema


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type(option, defs) for option in schema["anyOf"])
    if "$ref" in schema:
        return _resolve(schema, defs).get("title", "object")
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(type(values[0]), "value")
    kind = schema.get("type", "any")
    if kind == "array" and "prefixItems" in schema:
        return "[" + ", ".join(_type(item, defs) for item in schema["prefixItems"]) + "]"
    if kind == "array":
        return f"list[{_type(schema.get('items', {}), defs)}]"
    return kind


def _facts(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[list[Any] | None, list[str], str | None]:
    """(allowed values, bounds, the record kind it names) of a property, looking inside optionals and lists."""
    allowed, bounds, names = None, [], schema.get("names")
    if "enum" in schema or "const" in schema:
        allowed = list(schema.get("enum", [schema.get("const")]))
    bounds += [f"{sign} {schema[key]}" for key, sign in _BOUNDS if key in schema]
    if "pattern" in schema:
        bounds.append(f"matches {schema['pattern']}")
    for inner in [*schema.get("anyOf", []), *([schema["items"]] if isinstance(schema.get("items"), dict) else [])]:
        if "$ref" in inner:
            continue  # a nested model: its own fields are listed on their own rows
        inner_allowed, inner_bounds, inner_names = _facts(inner, defs)
        allowed, names = allowed or inner_allowed, names or inner_names
        bounds += [f"each {b}" if inner is schema.get("items") else b for b in inner_bounds]
    return allowed, bounds, names


def _default(field: Any) -> Any:
    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True)
    return json.loads(json.dumps(value.model_dump(mode="json") if isinstance(value, BaseModel) else value, default=str))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def actor_schema(broker: dramatiq.Broker, name: str) -> dict[str, Any]:
    """An actor's catalog entry with its payload fields and the options its dict fields take.

    Raises:
        KeyError: no actor has this name.
    """
    if name not in broker.actors:
        raise KeyError(name)
    [entry] = [row for row in actor_catalog(broker) if row["actor"] == name]
    schema = broker.get_actor(name).schema
    documented = schema.documented_options() if hasattr(schema, "documented_options") else {}
    return {**entry, "fields": payload_fields(schema) if schema else [], "options": documented}


def payload_fields(schema: type[BaseModel], prefix: str = "") -> list[dict[str, Any]]:
    """Every field of a payload schema, nested models flattened (``options.export.opset``; ``signals[].record``).

    Each row: name, type, required, default, allowed values, bounds, the record kind an id
    names (``names``), and the description. A schema's ``documented_options()`` lists what
    its free-form dict fields take (training options, model arguments, method parameters).
    """
    json_schema = schema.model_json_schema()
    defs = json_schema.get("$defs", {})
    rows = []
    for name, field in schema.model_fields.items():
        prop = json_schema["properties"][name]
        allowed, bounds, names = _facts(prop, defs)
        nested = _nested_model(field.annotation)
        description = field.description or (nested.__doc__ or "").strip().split("\n")[0] if nested else field.description
        rows.append({"name": prefix + name, "type": _type(prop, defs), "required": field.is_required(),
                     "default": _default(field), "allowed": allowed, "bounds": bounds, "names": names,
                     "description": description or ""})
        if nested is not None:
            many = _type(prop, defs).startswith("list[")
            rows += payload_fields(nested, f"{prefix}{name}{'[]' if many else ''}.")
    return rows


def option_row(name: str, type_name: str, default: Any = None, *, required: bool = False, allowed: Any = None,
               bounds: list[str] | None = None, description: str = "") -> dict[str, Any]:
    """One row of a nested option table (a dict field checked by ``pipeline``), shaped like a field's row."""
    return {"name": name, "type": type_name, "required": required, "default": default,
            "allowed": list(allowed) if allowed else None, "bounds": bounds or [], "names": None,
            "description": description}


def options_of_dataclass(config: type, allowed: Mapping[str, Any] | None = None,
                         descriptions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The rows of a ``pipeline`` config dataclass: each field's type and default (``allowed``: its choices)."""
    rows = []
    for f in dataclasses.fields(config):
        factory = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else (
            factory() if factory is not dataclasses.MISSING else None)
        required = f.default is dataclasses.MISSING and factory is dataclasses.MISSING
        rows.append(option_row(f.name, str(f.type), default if isinstance(default, (str, int, float, bool, list, dict))
                               or default is None else str(default), required=required,
                               allowed=(allowed or {}).get(f.name), description=(descriptions or {}).get(f.name, "")))
    return rows
