"""Just enough of CloudFormation's template language to provision a synthesized CDK template locally.

Intrinsic functions, pseudo parameters, conditions and mappings are resolved here; what each resource
type becomes lives in :mod:`mlcycle.local.cloudformation.resources`. A reference to anything not in the
template raises, so a wiring mistake in ``infra/`` fails on the laptop, not at deploy time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class TemplateError(ValueError):
    """The template refers to something it does not define, or uses what we cannot evaluate."""


@dataclass
class Created:
    """A provisioned resource: what ``Ref`` returns and what ``Fn::GetAtt`` can read."""

    ref: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scope:
    template: dict[str, Any]
    pseudo: dict[str, str]
    parameters: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Created] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            body = self.template.get("Conditions", {}).get(name)
            if body is None:
                raise TemplateError(f"unknown condition {name!r}")
            self.conditions[name] = bool(resolve(body, self))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].ref
        raise TemplateError(f"Ref to {name!r}, which is neither a parameter nor a created resource")

    def get_att(self, name: str, attr: str) -> Any:
        created = self.resources.get(name)
        if created is None:
            raise TemplateError(f"Fn::GetAtt on {name!r}, which is not created (yet)")
        if attr not in created.attrs:
            raise TemplateError(f"{name} has no attribute {attr!r} (has {sorted(created.attrs)})")
        return created.attrs[attr]


_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


def _sub(args: Any, scope: Scope) -> str:
    text, variables = (args, {}) if isinstance(args, str) else (args[0], resolve(args[1], scope))

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            logical, attr = name.split(".", 1)
            return str(scope.get_att(logical, attr))
        return str(scope.ref(name))

    return _SUB.sub(replace, text)


def _find_in_map(args: list[Any], scope: Scope) -> Any:
    name, top, second = (resolve(a, scope) for a in args)
    try:
        return scope.template["Mappings"][name][top][second]
    except KeyError as exc:
        raise TemplateError(f"Fn::FindInMap {name}/{top}/{second} is not in the template") from exc


def _if(args: list[Any], scope: Scope) -> Any:
    return resolve(args[1] if scope.condition(args[0]) else args[2], scope)


def _get_att(args: Any, scope: Scope) -> Any:
    if isinstance(args, str):
        args = args.split(".", 1)
    return scope.get_att(args[0], resolve(args[1], scope))


_FUNCTIONS: dict[str, Callable[[Any, Scope], Any]] = {
    "Ref": lambda a, s: s.ref(a),
    "Fn::GetAtt": _get_att,
    "Fn::Join": lambda a, s: str(a[0]).join(str(x) for x in resolve(a[1], s)),
    "Fn::Sub": _sub,
    "Fn::Select": lambda a, s: resolve(a[1], s)[int(resolve(a[0], s))],
    "Fn::Split": lambda a, s: str(resolve(a[1], s)).split(a[0]),
    "Fn::If": _if,
    "Fn::Equals": lambda a, s: resolve(a[0], s) == resolve(a[1], s),
    "Fn::Not": lambda a, s: not resolve(a[0], s),
    "Fn::And": lambda a, s: all(resolve(x, s) for x in a),
    "Fn::Or": lambda a, s: any(resolve(x, s) for x in a),
    "Condition": lambda a, s: s.condition(a),
    "Fn::FindInMap": _find_in_map,
    "Fn::GetAZs": lambda a, s: [f"{s.pseudo['AWS::Region']}{z}" for z in "abc"],
}

NO_VALUE = object()


def resolve(value: Any, scope: Scope) -> Any:
    """Evaluate every intrinsic function in ``value``; ``AWS::NoValue`` removes the key or item."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, args),) = value.items()
            if key == "Ref" and args == "AWS::NoValue":
                return NO_VALUE
            if key in _FUNCTIONS:
                return _FUNCTIONS[key](args, scope)
        out = {k: resolve(v, scope) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}
    if isinstance(value, list):
        return [x for x in (resolve(v, scope) for v in value) if x is not NO_VALUE]
    return value


def dependencies(resource: dict[str, Any], logical_ids: set[str]) -> set[str]:
    """The resources a resource refers to (Ref, GetAtt, Sub) or explicitly depends on."""
    found: set[str] = set()
    depends = resource.get("DependsOn", [])
    found.update([depends] if isinstance(depends, str) else depends)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, args in node.items():
                if key == "Ref" and isinstance(args, str):
                    found.add(args)
                elif key == "Fn::GetAtt":
                    found.add(args.split(".")[0] if isinstance(args, str) else args[0])
                elif key == "Fn::Sub":
                    text = args if isinstance(args, str) else args[0]
                    found.update(m.split(".")[0] for m in _SUB.findall(text))
                walk(args)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(resource.get("Properties", {}))
    return found & logical_ids


def creation_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Logical ids, each after everything it depends on (Kahn's algorithm, stable by template order)."""
    ids = set(resources)
    deps = {name: dependencies(body, ids) for name, body in resources.items()}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(resources):
        ready = [n for n in resources if n not in done and deps[n] <= done]
        if not ready:
            cycle = sorted(n for n in resources if n not in done)
            raise TemplateError(f"circular dependencies among {cycle}")
        order.extend(ready)
        done.update(ready)
    return order
