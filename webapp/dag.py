"""A run's job graph as server-rendered SVG: no JavaScript, no layout library.

``render_svg(nodes, edges)`` is a pure function: the jobs and their ``needs`` edges in,
one escaped SVG document out. Layout is layered: a job's column is the longest path of
needs leading to it (so a stage that needs the previous one lands right of it), and
within a column jobs keep their stage order, nudged by a few barycentre sweeps to
untangle the edges. Each node is a link to its job, shows the job name (truncated, with
a ``<title>`` giving the full name) and its status as an icon plus a word, so status is
never colour alone. Colours come from classes that prts.css styles (light and dark);
presentation attributes keep the drawing readable without the stylesheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup

NODE_WIDTH = 200
NODE_HEIGHT = 56
COLUMN_GAP = 64
ROW_GAP = 16
PADDING = 16
HEADER_HEIGHT = 28  # room for the stage names above the columns
NAME_CHARS = 22  # what fits in a node at the name's font size; longer names get "…"
STAGE_CHARS = 26
SWEEPS = 4

STATUS_LABELS = {
    "pending": "Pending", "queued": "Queued", "running": "Running", "success": "Success",
    "failed": "Failed", "canceled": "Canceled", "skipped": "Skipped",
}

# The same 16x16 glyphs as macros/ui.html's icon(), so the graph and the pills agree.
_ICONS = {
    "pending": '<circle cx="8" cy="8" r="6.25"/><path d="M8 4.75V8l2.25 1.5"/>',
    "queued": '<circle cx="8" cy="8" r="6.25" stroke-dasharray="2.6 2.3"/>'
              '<circle cx="8" cy="8" r="1.5" fill="currentColor" stroke="none"/>',
    "running": '<circle cx="8" cy="8" r="6" opacity="0.3"/><path d="M14 8a6 6 0 0 0-6-6"/>',
    "success": '<path d="M3 8.5l3.25 3.25L13 5"/>',
    "failed": '<path d="M4 4l8 8M12 4l-8 8"/>',
    "canceled": '<circle cx="8" cy="8" r="6.25"/><path d="M3.6 12.4l8.8-8.8"/>',
    "skipped": '<path d="M3 4l4 4-4 4M9 4l4 4-4 4"/>',
    "unknown": '<circle cx="8" cy="8" r="2.75" fill="currentColor" stroke="none"/>',
}


@dataclass(frozen=True)
class Node:
    """One job as the graph shows it. ``detail`` is optional extra text after the status
    (a duration, say); ``order`` breaks ties so the drawing is stable between renders."""

    id: int
    name: str
    status: str
    href: str
    stage: str = ""
    stage_index: int = 0
    order: int = 0
    detail: str = ""


@dataclass
class Layout:
    """Columns of node ids (left to right, each top to bottom) and every node's box."""

    columns: list[list[int]]
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (x, y) of the top left corner
    edges: list[tuple[int, int]] = field(default_factory=list)  # (needed, needing), both drawn
    width: int = 0
    height: int = 0

    def column_of(self, node_id: int) -> int:
        for index, column in enumerate(self.columns):
            if node_id in column:
                return index
        raise KeyError(node_id)


def _truncate(text: str, limit: int) -> str:
    text = " ".join(str(text).split())  # no newlines or runs of spaces inside one SVG line
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _status(value: str) -> str:
    value = str(value or "").strip().lower()
    return value if value in STATUS_LABELS else "unknown"


def _longest_path_layers(ids: list[int], preds: dict[int, list[int]]) -> dict[int, int]:
    """Column = length of the longest chain of needs ending at the node. An edge that
    would close a cycle (the planner never makes one) is ignored instead of looping."""
    layer: dict[int, int] = {}
    for start in ids:
        if start in layer:
            continue
        stack: list[tuple[int, int]] = [(start, 0)]  # (node, index of the next predecessor to visit)
        on_path = {start}
        while stack:
            node, i = stack[-1]
            ps = preds[node]
            if i < len(ps):
                stack[-1] = (node, i + 1)
                p = ps[i]
                if p not in layer and p not in on_path:
                    on_path.add(p)
                    stack.append((p, 0))
                continue
            stack.pop()
            on_path.discard(node)
            layer[node] = max((layer[p] + 1 for p in ps if p in layer), default=0)
    return layer


def layout(nodes: list[Node], edges: list[tuple[int, int]]) -> Layout:
    """Place ``nodes``; ``edges`` are ``(needed_id, needing_id)`` pairs. Edges naming an
    unknown node, self-edges and duplicates are dropped."""
    by_id = {n.id: n for n in nodes}
    ids = list(by_id)
    clean: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for a, b in edges:
        if a in by_id and b in by_id and a != b and (a, b) not in seen:
            seen.add((a, b))
            clean.append((a, b))
    preds: dict[int, list[int]] = {i: [] for i in ids}
    succs: dict[int, list[int]] = {i: [] for i in ids}
    for a, b in clean:
        preds[b].append(a)
        succs[a].append(b)
    layer = _longest_path_layers(ids, preds)
    # Keep only edges that go rightwards (a cycle's closing edge does not).
    clean = [(a, b) for a, b in clean if layer[a] < layer[b]]

    count = max(layer.values(), default=-1) + 1
    base = {i: (by_id[i].stage_index, by_id[i].order, i) for i in ids}
    columns = [sorted((i for i in ids if layer[i] == c), key=base.__getitem__) for c in range(count)]

    def reorder(column: list[int], neighbours: dict[int, list[int]], reference: list[int]) -> list[int]:
        position = {n: k for k, n in enumerate(reference)}

        def key(n: int):
            linked = [position[m] for m in neighbours[n] if m in position]
            centre = sum(linked) / len(linked) if linked else float(column.index(n))
            # Stages stay together; inside a stage the barycentre decides.
            return (by_id[n].stage_index, centre, base[n])

        return sorted(column, key=key)

    for sweep in range(SWEEPS):
        if sweep % 2 == 0:
            for c in range(1, count):
                columns[c] = reorder(columns[c], preds, columns[c - 1])
        else:
            for c in range(count - 2, -1, -1):
                columns[c] = reorder(columns[c], succs, columns[c + 1])

    rows = max((len(col) for col in columns), default=0)
    header = HEADER_HEIGHT if any(_column_stage(col, by_id) for col in columns) else 0
    result = Layout(columns=columns, edges=clean)
    result.width = 2 * PADDING + count * NODE_WIDTH + max(count - 1, 0) * COLUMN_GAP if count else 2 * PADDING
    result.height = 2 * PADDING + header + rows * NODE_HEIGHT + max(rows - 1, 0) * ROW_GAP
    for c, column in enumerate(columns):
        x = PADDING + c * (NODE_WIDTH + COLUMN_GAP)
        # Shorter columns are centred against the tallest.
        offset = (rows - len(column)) * (NODE_HEIGHT + ROW_GAP) // 2
        for r, node_id in enumerate(column):
            result.positions[node_id] = (x, PADDING + header + offset + r * (NODE_HEIGHT + ROW_GAP))
    return result


def _column_stage(column: list[int], by_id: dict[int, Node]) -> str:
    stages = {by_id[i].stage for i in column}
    return stages.pop() if len(stages) == 1 else ""


def _edge_path(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = max(COLUMN_GAP / 2, (x2 - x1) / 3)
    return f"M{x1:g} {y1:g}C{x1 + bend:g} {y1:g} {x2 - bend:g} {y2:g} {x2:g} {y2:g}"


def render_svg(nodes: list[Node], edges: list[tuple[int, int]], *, label: str = "Job graph",
               id_prefix: str = "dag") -> Markup:
    """The graph as an inline ``<svg>`` element (safe to put in a page as it is: every
    piece of text and every attribute is escaped here)."""
    plan = layout(nodes, edges)
    by_id = {n.id: n for n in nodes}
    prefix = escape(id_prefix)
    columns = len(plan.columns)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag__svg dag__svg--cols-{min(columns, 12)}" '
        f'width="{plan.width}" height="{plan.height}" viewBox="0 0 {plan.width} {plan.height}" '
        f'role="group" aria-label="{escape(label)}" data-columns="{columns}" font-family="system-ui, sans-serif">',
        f"<title>{escape(label)}</title>",
        f'<defs><marker id="{prefix}-arrow" class="dag__arrow" viewBox="0 0 8 8" refX="7" refY="4" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0 0L8 4L0 8z" fill="#7f8998"/></marker></defs>',
    ]
    # Stage names over the columns that hold one stage only.
    for c, column in enumerate(plan.columns):
        stage = _column_stage(column, by_id)
        if stage:
            x = PADDING + c * (NODE_WIDTH + COLUMN_GAP)
            out.append(f'<text class="dag__stage" x="{x + 2}" y="{PADDING + 14}" font-size="12" '
                       f'fill="#566070">{escape(_truncate(stage, STAGE_CHARS))}</text>')
    out.append('<g class="dag__edges">')
    for a, b in plan.edges:
        ax, ay = plan.positions[a]
        bx, by = plan.positions[b]
        d = _edge_path(ax + NODE_WIDTH, ay + NODE_HEIGHT / 2, bx - 2, by + NODE_HEIGHT / 2)
        out.append(f'<path class="dag__edge dag__edge--{_status(by_id[a].status)}" d="{d}" fill="none" '
                   f'stroke="#7f8998" stroke-width="1.5" marker-end="url(#{prefix}-arrow)" '
                   f'data-from="{a}" data-to="{b}"/>')
    out.append("</g>")
    for node in nodes:
        out.append(_node(node, *plan.positions[node.id]))
    out.append("</svg>")
    return Markup("".join(out))


def _node(node: Node, x: int, y: int) -> str:
    state = _status(node.status)
    label = STATUS_LABELS.get(state, str(node.status or "unknown").replace("_", " ").capitalize())
    full = " ".join(str(node.name).split())
    state_text = f"{label} \u00b7 {node.detail}" if node.detail else label
    return (
        f'<a class="dag__link" href="{escape(node.href)}" aria-label="{escape(full)}: {escape(state_text)}">'
        f'<g class="dag__node dag__node--{state}" transform="translate({x} {y})" data-job="{node.id}">'
        f"<title>{escape(full)} ({escape(state_text)})</title>"
        f'<rect class="dag__box" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="8" fill="#ffffff" '
        f'stroke="#7f8998" stroke-width="1"/>'
        f'<rect class="dag__band" width="4" height="{NODE_HEIGHT - 12}" x="0" y="6" rx="2" fill="#7f8998"/>'
        f'<text class="dag__name" x="14" y="23" font-size="13" font-weight="600" fill="#1a1e24">'
        f"{escape(_truncate(full, NAME_CHARS))}</text>"
        f'<g class="dag__icon" transform="translate(14 31)" fill="none" stroke="currentColor" stroke-width="2" '
        f'stroke-linecap="round" stroke-linejoin="round" color="#414a57">'
        f'<g class="dag__spin">{_ICONS[state]}</g></g>'
        f'<text class="dag__state" x="36" y="44" font-size="12" fill="#414a57">{escape(state_text)}</text>'
        f"</g></a>"
    )
