"""Generate ``docs/config.md`` from the config schemas: ``python -m rivergraph.config.docs [--check] [PATH]``.

Every section of every command's config is a table of its keys (type, default, description), written from the
pydantic models themselves, so the page cannot drift from the code (the test suite checks it is current)."""
from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["render", "main"]

_INTRO = """# Configuration reference

Generated from the schemas in `rivergraph/config/` by `python -m rivergraph.config.docs` (do not edit by hand;
the test suite checks that this page is current). Every config is YAML; unknown keys are errors, and every
error names the key. Sections shared between commands (network, routing, output) are the same classes.
"""


def _type_name(t) -> str:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is typing.Union or str(origin) == "types.UnionType":
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if origin is not None and args:   # Annotated / SerializeAsAny
        return _type_name(args[0])
    if isinstance(t, type) and issubclass(t, BaseModel):
        return f"[{t.__name__}](#{t.__name__.lower()})"
    return getattr(t, "__name__", str(t))


def _default(f) -> str:
    if f.default is PydanticUndefined and f.default_factory is None:
        return "**required**"
    v = f.default_factory() if f.default_factory is not None else f.default
    if isinstance(v, BaseModel):
        return "(section)"
    return f"`{v!r}`" if v is not None else "`null`"


def _models(model: type[BaseModel], seen: dict) -> None:
    if model.__name__ in seen:
        return
    seen[model.__name__] = model
    for f in model.model_fields.values():
        for t in _walk(f.annotation):
            _models(t, seen)


def _walk(t):
    if isinstance(t, type) and issubclass(t, BaseModel):
        yield t
    for a in typing.get_args(t):
        yield from _walk(a)


def _table(model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split())
    rows = [f"### {model.__name__}", "", doc, "", "| key | type | default | description |", "|---|---|---|---|"]
    for name, f in model.model_fields.items():
        desc = (f.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_name(f.annotation)} | {_default(f)} | {desc} |")
    return "\n".join(rows) + "\n"


def render() -> str:
    """The Markdown of docs/config.md."""
    from .bmi import BmiConfig
    from .route import RouteConfig
    from .runoff import RUNOFF_PROVIDERS
    from .temperature import TemperatureConfig
    from .train import TrainConfig

    out = [_INTRO]
    commands = [("rivergraph route CONFIG.yaml", RouteConfig), ("rivergraph train CONFIG.yaml", TrainConfig),
                ("rivergraph temperature CONFIG.yaml", TemperatureConfig),
                ("BMI (rivergraph.bmi.BmiRiverGraph.initialize)", BmiConfig)]
    done: dict = {}
    for title, model in commands:
        seen: dict = {}
        _models(model, seen)
        if model is RouteConfig:
            for schema, _ in RUNOFF_PROVIDERS.values():
                _models(schema, seen)
        out.append(f"## {title}\n")
        if model is RouteConfig:
            out.append("Runoff providers (`runoff.kind`): " + ", ".join(
                f"`{k}` ([{s.__name__}](#{s.__name__.lower()}))" for k, (s, _) in RUNOFF_PROVIDERS.items()) + ".\n")
        for name, m in seen.items():
            if name in done:
                out.append(f"{name}: see [above](#{name.lower()}).\n")
                continue
            done[name] = m
            out.append(_table(m))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) docs/config.md; returns 1 when --check finds it stale."""
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    path = Path(rest[0]) if rest else Path(__file__).resolve().parents[2] / "docs" / "config.md"
    text = render()
    if check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run python -m rivergraph.config.docs", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
