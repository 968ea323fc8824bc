"""The job graph: layered layout and the SVG it renders (webapp/dag.py, a pure function)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from webapp import dag
from webapp.dag import Node, layout, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def node(i: int, name: str | None = None, status: str = "success", stage: str = "s", stage_index: int = 0,
         detail: str = "") -> Node:
    return Node(id=i, name=name or f"job{i}", status=status, href=f"/acme/web/-/jobs/{i}", stage=stage,
                stage_index=stage_index, order=i, detail=detail)


def parse(svg) -> ET.Element:
    return ET.fromstring(str(svg))  # also proves the document is well-formed XML


def test_columns_follow_the_longest_path_of_needs():
    # a -> b -> c and a -> c: c sits right of b, not next to it.
    nodes = [node(1, "a"), node(2, "b"), node(3, "c"), node(4, "lonely")]
    plan = layout(nodes, [(1, 2), (2, 3), (1, 3)])
    assert [sorted(col) for col in plan.columns] == [[1, 4], [2], [3]]
    assert plan.column_of(3) == 2
    xs = {i: plan.positions[i][0] for i in (1, 2, 3)}
    assert xs[1] < xs[2] < xs[3]


def test_stages_become_columns_and_every_job_has_a_box():
    nodes = [node(1, "Test 3.11", stage="Build"), node(2, "Test 3.12", stage="Build"),
             node(3, "Release", stage="Deploy", stage_index=1)]
    plan = layout(nodes, [(1, 3), (2, 3)])
    assert plan.columns == [[1, 2], [3]]
    assert set(plan.positions) == {1, 2, 3}
    # The single node of the short column is centred against the taller one.
    (_, y1), (_, y2), (_, y3) = plan.positions[1], plan.positions[2], plan.positions[3]
    assert y1 < y3 < y2
    # Boxes never overlap.
    assert y2 - y1 >= dag.NODE_HEIGHT
    assert plan.width == 2 * dag.PADDING + 2 * dag.NODE_WIDTH + dag.COLUMN_GAP


def test_within_a_column_stage_order_wins_then_edges_are_untangled():
    # Column 1 holds x (needs the bottom node) and y (needs the top node): the sweep puts y
    # first so the two edges do not cross.
    nodes = [node(1, "top"), node(2, "bottom"), node(3, "x", stage_index=1), node(4, "y", stage_index=1)]
    plan = layout(nodes, [(2, 3), (1, 4)])
    assert plan.columns[1] == [4, 3]
    # ... but a later stage never goes above an earlier one in the same column.
    nodes = [node(1, "a", stage_index=0), node(2, "b", stage="late", stage_index=5), node(3, "c", stage_index=0)]
    plan = layout(nodes, [])
    assert plan.columns == [[1, 3, 2]]


def test_bad_edges_are_dropped_and_a_cycle_does_not_hang():
    nodes = [node(1), node(2), node(3)]
    plan = layout(nodes, [(1, 2), (2, 3), (3, 1), (1, 1), (1, 99), (1, 2)])
    assert sorted(len(c) for c in plan.columns) == [1, 1, 1]
    assert len(plan.edges) == 2 and all(plan.column_of(a) < plan.column_of(b) for a, b in plan.edges)


def test_empty_graph():
    plan = layout([], [])
    assert plan.columns == [] and plan.width == 2 * dag.PADDING
    assert parse(render_svg([], [])).tag == f"{SVG}svg"


def test_svg_has_one_linked_node_per_job_and_one_path_per_edge():
    nodes = [node(1, "build", stage="Build"), node(2, "test", status="running", stage="Test", stage_index=1),
             node(3, "lint", status="failed", stage="Test", stage_index=1),
             node(4, "deploy", status="pending", stage="Deploy", stage_index=2)]
    edges = [(1, 2), (1, 3), (2, 4), (3, 4)]
    root = parse(render_svg(nodes, edges, label="Jobs of pipeline #7"))
    links = root.findall(f"{SVG}a")
    assert [a.get("href") for a in links] == [f"/acme/web/-/jobs/{i}" for i in (1, 2, 3, 4)]
    groups = [a.find(f"{SVG}g") for a in links]
    assert [g.get("class") for g in groups] == ["dag__node dag__node--success", "dag__node dag__node--running",
                                                "dag__node dag__node--failed", "dag__node dag__node--pending"]
    paths = root.findall(f"{SVG}g[@class='dag__edges']/{SVG}path")
    assert sorted((int(p.get("data-from")), int(p.get("data-to"))) for p in paths) == sorted(edges)
    assert all(p.get("d").startswith("M") for p in paths)
    assert root.find(f"{SVG}title").text == "Jobs of pipeline #7"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert "dag__svg--cols-3" in root.get("class")
    # The stage names head their columns.
    assert [t.text for t in root.findall(f"{SVG}text[@class='dag__stage']")] == ["Build", "Test", "Deploy"]


def test_status_is_shown_as_a_word_and_an_icon_not_colour_alone():
    root = parse(render_svg([node(1, status="failed", detail="1m 05s"), node(2, status="weird")], []))
    first, second = root.findall(f"{SVG}a")
    assert first.find(f".//{SVG}text[@class='dag__state']").text == "Failed \u00b7 1m 05s"
    assert first.find(f".//{SVG}g[@class='dag__icon']/{SVG}g/{SVG}path") is not None
    assert first.get("aria-label") == "job1: Failed \u00b7 1m 05s"
    assert second.find(f".//{SVG}text[@class='dag__state']").text == "Weird"
    assert "dag__node--unknown" in second.find(f"{SVG}g").get("class")


def test_names_are_escaped_and_long_ones_truncated_with_the_full_name_in_a_title():
    evil = '<script>alert("x")</script> & "quotes" \'too\''
    long = "Integration tests [python=3.12, database=postgresql]"
    svg = str(render_svg([node(1, evil, stage="<b>stage</b>"), node(2, long)], [],
                         label="graph <i>", id_prefix='x"y'))
    assert "<script" not in svg and "<b>" not in svg and "<i>" not in svg
    assert "&lt;script&gt;" in svg and 'x&quot;y-arrow' in svg
    root = parse(svg)
    first, second = root.findall(f"{SVG}a")
    assert first.find(f".//{SVG}title").text.startswith(evil)  # round-trips as text
    shown = second.find(f".//{SVG}text[@class='dag__name']").text
    assert shown.endswith("\u2026") and len(shown) <= dag.NAME_CHARS and long.startswith(shown[:-1])
    assert second.find(f".//{SVG}title").text.startswith(long)
    assert second.get("aria-label").startswith(long)


def test_hrefs_are_escaped_as_attributes():
    svg = str(render_svg([Node(id=1, name="n", status="success", href='/x?a=1&b="2"')], []))
    assert 'href="/x?a=1&amp;b=&quot;2&quot;"' in svg
    assert parse(svg).find(f"{SVG}a").get("href") == '/x?a=1&b="2"'


def test_render_returns_markup_that_jinja_does_not_escape_again():
    from markupsafe import Markup, escape

    svg = render_svg([node(1)], [])
    assert isinstance(svg, Markup) and escape(svg) == svg


@pytest.mark.parametrize("count", [1, 5, 40])
def test_wide_graphs_grow_sideways_and_stay_well_formed(count):
    nodes = [node(i, stage=f"s{i}", stage_index=i) for i in range(count)]
    edges = [(i, i + 1) for i in range(count - 1)]
    root = parse(render_svg(nodes, edges))
    assert int(root.get("width")) == 2 * dag.PADDING + count * dag.NODE_WIDTH + (count - 1) * dag.COLUMN_GAP
    assert re.search(r"dag__svg--cols-(\d+)", root.get("class")).group(1) == str(min(count, 12))
