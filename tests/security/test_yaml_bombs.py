"""Hostile pipeline files are refused quickly, with a clear message, and nothing is built.

Anyone who can push writes `.prts/pipeline.yaml`, and the web process and the workers
read it. Each case here must be refused in well under a second; the bound asserted
(``LIMIT``) is a generous safety margin for slow machines, not a benchmark. Every case
runs with libyaml's parser and with the pure-Python one.
"""

from __future__ import annotations

import time

import pytest

from appliance.pipelines import dsl
from appliance.pipelines.spec import PipelineError

LIMIT = 2.0  # seconds

HEAD = 'version: "1.0"\nname: p\n'
JOBS = "stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]\n"


@pytest.fixture(autouse=True, params=["libyaml", "pure"])
def loader(request, monkeypatch):
    if request.param == "pure":
        monkeypatch.setattr(dsl, "_LOADER", dsl._PureLoader)
    elif dsl._LOADER is dsl._PureLoader:
        pytest.fail("PyYAML was built without libyaml; the suite checks both parsers agree")


def refused(source: str | bytes) -> tuple[str, float]:
    """The first problem's text and how long refusing took."""
    start = time.perf_counter()
    with pytest.raises(PipelineError) as info:
        dsl.parse(source)
    elapsed = time.perf_counter() - start
    return str(info.value.problems[0]), elapsed


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ['a0: &a0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return HEAD + JOBS + "\n".join(lines) + "\n"


def test_billion_laughs():
    text = billion_laughs()
    assert text.count("*") == 90  # under the alias cap: the expansion itself is what is refused
    message, elapsed = refused(text)
    assert "expands to more than 100,000 values" in message and "billion laughs" in message
    assert elapsed < LIMIT


def test_billion_laughs_in_block_style_and_through_keys():
    lines = ['l0: &l0 "lol"']
    for level in range(1, 10):
        lines.append(f"l{level}: &l{level}")
        lines.extend(f"  k{i}: *l{level - 1}" for i in range(10))
    message, elapsed = refused(HEAD + JOBS + "\n".join(lines) + "\n")
    assert "expands to more than" in message and elapsed < LIMIT


def test_quadratic_blowup_under_the_alias_cap():
    # One big list referred to 100 times: 100 aliases x 2,000 values.
    big = "[" + ", ".join(["x"] * 2000) + "]"
    text = HEAD + JOBS + f"big: &big {big}\nrefs: [" + ", ".join(["*big"] * 100) + "]\n"
    message, elapsed = refused(text)
    assert "expands to more than 100,000 values" in message and elapsed < LIMIT


def test_too_many_aliases():
    text = HEAD + JOBS + "v: &v x\nrefs: [" + ", ".join(["*v"] * 101) + "]\n"
    message, elapsed = refused(text)
    assert "more than 100 aliases" in message and elapsed < LIMIT


def test_recursive_alias():
    message, elapsed = refused(HEAD + JOBS + "loop: &loop [ a, [ *loop ] ]\n")
    assert "the alias *loop is inside the value it refers to" in message and elapsed < LIMIT


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")])
def test_deep_flow_nesting(opening, closing):
    text = HEAD + JOBS + "deep: " + opening * 10_000 + "x" + closing * 10_000 + "\n"
    message, elapsed = refused(text)
    # Our depth check, or libyaml's own (0.2.5+ stops at 1000 flow levels) when it gets there first.
    assert ("nested more than 64 levels deep" in message or "exceeded maximum nesting depth" in message)
    assert elapsed < LIMIT


def test_deep_block_nesting():
    text = HEAD + JOBS + "".join(f"{' ' * i}k{i}:\n" for i in range(10_000)) + " " * 10_000 + "x\n"
    assert len(text) < dsl.MAX_BYTES * 100  # refused by depth or size, never parsed whole
    message, elapsed = refused(text)
    assert ("nested more than 64 levels deep" in message or "limit is 1,048,576 bytes" in message)
    assert elapsed < LIMIT
    shallower = HEAD + JOBS + "".join(f"{' ' * i}k{i}:\n" for i in range(1000)) + " " * 1000 + "x\n"
    message, elapsed = refused(shallower)
    assert "nested more than 64 levels deep" in message and elapsed < LIMIT


def test_deep_nesting_through_aliases():
    # Each anchor nests 60 levels and refers to the one before: shallow as written, deep expanded.
    lines = []
    for i in range(5):
        inner = f"*n{i - 1}" if i else "x"
        lines.append(f"n{i}: &n{i} " + "[" * 60 + inner + "]" * 60)
    message, elapsed = refused(HEAD + JOBS + "\n".join(lines) + "\n")
    assert "nested more than 64 levels deep once aliases are expanded" in message and elapsed < LIMIT


@pytest.mark.parametrize("kind", [bytes, str])
def test_a_hundred_megabytes_is_refused_by_size_before_parsing(kind):
    text = HEAD + JOBS + "x: " + "a" * (100 * 1024 * 1024) + "\n"
    source = text.encode() if kind is bytes else text
    message, elapsed = refused(source)
    assert "the limit is 1,048,576 bytes" in message and message.startswith(".prts/pipeline.yaml:1:1:")
    assert elapsed < LIMIT


def test_just_over_the_size_limit_counting_bytes_not_characters():
    padding = "é" * (dsl.MAX_BYTES // 2)  # two bytes each: fewer characters than bytes
    message, _ = refused(HEAD + JOBS + f"x: {padding}\n")
    assert "limit is 1,048,576 bytes" in message


def test_a_large_but_legal_file_parses_in_time():
    stages = "".join(f"  - name: S{s}\n    jobs:\n" + "".join(
        f"      - {{ name: J{j}, variables: {{ A: b }}, steps: [ {{ run: make }} ] }}\n" for j in range(100))
        for s in range(10))
    start = time.perf_counter()
    spec = dsl.parse(HEAD + "stages:\n" + stages)
    assert sum(len(stage.jobs) for stage in spec.stages) == 1000
    assert time.perf_counter() - start < 10 * LIMIT  # a thousand jobs: the most a run may have


def test_a_megabyte_of_values_is_refused_by_count_in_time():
    values = "[" + ", ".join(["1"] * 200_000) + "]"  # 600 kB of tiny values
    message, elapsed = refused(HEAD + JOBS + f"x: {values}\n")
    assert "expands to more than 100,000 values" in message and elapsed < 5 * LIMIT


@pytest.mark.parametrize("tagged, shown", [
    ("!!python/object/apply:os.system [\"touch /tmp/pwned\"]", "!!python/object/apply:os.system"),
    ("!!python/name:os.system", "!!python/name:os.system"),
    ("!!python/object:__main__.X {}", "!!python/object:__main__.X"),
    ("!custom value", "!custom"),
    ("!Ref Something", "!Ref"),
    ("!!binary aGVsbG8=", "!!binary"),
    ("!!timestamp 2024-01-01", "!!timestamp"),
    ("!!set {a, b}", "!!set"),
    ("!<tag:example.com,2024:x> y", "tag:example.com,2024:x"),
])
def test_custom_tags_are_refused_naming_the_tag(tagged, shown, tmp_path):
    text = HEAD + f"variables: {{ X: {tagged} }}\n" + JOBS
    message, elapsed = refused(text)
    assert f"the tag {shown} is not allowed" in message and message.startswith(".prts/pipeline.yaml:3:")
    assert elapsed < LIMIT
    assert not (tmp_path / "pwned").exists()


def test_a_tag_on_a_key_or_a_list_is_refused_too():
    assert "the tag !!python/tuple is not allowed" in refused(HEAD + JOBS + "x: !!python/tuple [1, 2]\n")[0]
    assert "the tag !k is not allowed" in refused(HEAD + JOBS + "!k key: 1\n")[0]


def test_templates_are_text_and_cannot_change_the_structure():
    spec = dsl.parse(HEAD + 'variables: { STAGES: "[{name: X}]", EVIL: "${{ secrets.TOKEN }}" }\n' + JOBS)
    assert dict(spec.variables) == {"STAGES": "[{name: X}]", "EVIL": "${{ secrets.TOKEN }}"}
    assert [stage.name for stage in spec.stages] == ["A"]
