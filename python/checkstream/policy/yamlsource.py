"""YAML to plain Python data, remembering the line of every value.

PyYAML's ``safe_load`` forgets where things came from and silently keeps the last of duplicate
keys; policies need both fixed, so the composed node tree is walked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from checkstream.policy.errors import PolicyError

Path_ = tuple[str | int, ...]


@dataclass
class LineMap:
    """Line numbers (1-based) of every mapping key / sequence item, by its path in the document."""

    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class _Constructor(yaml.constructor.SafeConstructor):
    pass


def load_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse one YAML document into Python data plus a :class:`LineMap`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(f"invalid YAML: {exc.problem}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"invalid YAML: {exc}", file=file) from exc
    lines = LineMap()
    if node is None:
        return None, lines
    constructor = _Constructor()
    return _walk(node, (), lines, constructor, file), lines


def _walk(node: yaml.Node, path: Path_, lines: LineMap, ctor: _Constructor, file: str) -> Any:
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise PolicyError(
                    f"mapping keys must be strings, got {key!r}", file=file, line=line
                )
            if key in out:
                raise PolicyError(f"duplicate key {key!r}", file=file, line=line)
            lines.lines[(*path, key)] = line
            out[key] = _walk(value_node, (*path, key), lines, ctor, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items: list[Any] = []
        for index, item in enumerate(node.value):
            lines.lines[(*path, index)] = item.start_mark.line + 1
            items.append(_walk(item, (*path, index), lines, ctor, file))
        return items
    return ctor.construct_object(node, deep=True)
