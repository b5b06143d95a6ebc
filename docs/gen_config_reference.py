"""Write docs/reference/config.md: every key of evaluate.py and train.py, from the schema (zsiqa/config/schema.py),
with its default as composed from configs/ and the comment that configs/*.yaml or the schema gives it.

    python docs/gen_config_reference.py          # tests/test_docs.py fails when the committed page is stale
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from enum import Enum
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "config.md"
GROUP_FILES = {"data": "data/demo.yaml"}  # groups whose default option's YAML documents its keys
OBJECT_GROUPS = {"logger": "logger", "trainer": "trainer", "callbacks": "callbacks", "predict_trainer": "trainer"}


def yaml_comments(path: Path, prefix: str = "") -> dict[str, str]:
    """Dotted key -> its inline comment (and the comment lines indented under it) in one YAML file."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            if last and len(line) - len(line.lstrip()) > 10:  # a comment continued on the next line
                comments[last] += " " + line.strip().lstrip("#").strip()
            continue
        default = re.match(r"^\s*- (?:override )?([\w@]+): *[^#]*?#\s*(.*)$", line)
        if default:  # a group's option in the defaults list documents the group's name key
            comments.setdefault(prefix + default.group(1).split("@")[-1] + ".name", default.group(2).strip())
            last = None
            continue
        m = re.match(r"^(\s*)([A-Za-z_][\w@]*):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if not m:
            last = None
            continue
        indent, key, _, comment = len(m.group(1)), m.group(2), m.group(3), m.group(4)
        stack = [(i, k) for i, k in stack if i < indent]
        dotted = prefix + ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        last = dotted if comment else None
        if comment:
            comments[dotted] = comment.strip()
    return comments


def schema_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment beside it in the dataclass source (base classes included)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        for m in re.finditer(r"^\s+(\w+): [^\n#]*#\s*(.*)$", inspect.getsource(klass), re.M):
            comments[m.group(1)] = m.group(2).strip()
    return comments


def type_name(tp: typing.Any) -> str:
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " \\| ".join(f"`{e.value}`" for e in tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return type_name(inner[0]) + " or `null`"
    if origin in (list, typing.List):
        return "list"
    return getattr(tp, "__name__", str(tp))


def default_text(value: typing.Any) -> str:
    from zsiqa.config import plain

    value = plain(value)
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ",".join(str(v["name"] if isinstance(v, dict) else v) for v in value) + "]`"
    return f"`{value}`"


def cell(text: str) -> str:
    """One table cell: one line, rst literals as Markdown ones, ``<...>`` placeholders kept as text."""
    text = " ".join(text.split()).replace("``", "`")
    return re.sub(r"<([^>`]*)>", r"&lt;\1&gt;", text).replace("|", "\\|")


def rows(cls: type, obj: typing.Any, comments: dict[str, str], prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    own = schema_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += rows(tp, getattr(obj, f.name), comments, key + ".")
            continue
        if f.name in OBJECT_GROUPS and not prefix:
            group = OBJECT_GROUPS[f.name]
            value = getattr(obj, f.name)
            target = (value.get("_target_") or ", ".join(value)) if value else "none"
            note = comments.get(f.name) or own.get(f.name, "")
            out.append(f"| `{key}` | Lightning object (`configs/{group}/`) | `{target}` | {cell(note)} |")
            continue
        note = comments.get(key) or own.get(f.name) or (tp.__doc__ if isinstance(tp, type) and issubclass(tp, Enum)
                                                        else "") or ""
        out.append(f"| `{key}` | {type_name(tp)} | {default_text(getattr(obj, f.name))} | {cell(note)} |")
    return out


def render() -> str:
    from zsiqa.config.command_line import compose_config
    from zsiqa.config.schema import SCHEMAS

    parts = ["# Configuration", "",
             "Every key of `evaluate.py` and `train.py`, generated from the schema (`zsiqa/config/schema.py`) with the",
             "defaults composed from `configs/` (`python docs/gen_config_reference.py` writes this page). Set any key on",
             "the command line (`run.batch_size=32`, `distance=[l2,cos]`); groups choose a YAML file (`data=tid2013`,",
             "`logger=wandb`); `trainer.<arg>=` and `+callbacks.<name>._target_=` change the Lightning objects",
             "([Sweeps and clusters](../guide/sweeps.md)). A wrong key or type stops before anything runs, with one line.", ""]
    for entry, cls in SCHEMAS.items():
        comments = yaml_comments(REPO / "configs" / f"{entry}.yaml")
        for group, file in GROUP_FILES.items():
            comments.update({k: v for k, v in yaml_comments(REPO / "configs" / file, group + ".").items()
                             if k not in comments})
        parts += [f"## {entry}.py", "", "| key | type | default | what it does |", "|---|---|---|---|",
                  *rows(cls, compose_config(entry), comments), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
