"""Markdown specs: heading tree, anchors and attributes, fenced code, unique slugs, speed, errors."""

from __future__ import annotations

import re

import pytest
from conftest_specs import large_markdown, write

from msm_eval.errors import MsmEvalError
from msm_eval.spec import load_spec, parse_heading_attrs, parse_markdown_sections, slugify

DOC = """\
# The Spec {#top version=2}

Intro text.

## Safety rules {#safety kind=area owner="policy team" note='single quoted'}

Stay safe.

### Oversight

Accept correction.

```markdown
# Not a heading inside a fence
## Still not
```

### Oversight

A second section with the same title.

## Examples ##

~~~~
### not a heading (tilde fence)
```
still inside the tilde fence
~~~~

####### seven hashes is text, not a heading
#no-space is text too

### Overview {.note .wide}

Last words.
"""


@pytest.fixture()
def doc_spec(tmp_path):
    return load_spec(write(tmp_path, "spec.md", DOC))


def test_heading_tree_shape(doc_spec):
    assert doc_spec.format == "markdown" and doc_spec.name == "spec" and doc_spec.title == "The Spec"
    assert doc_spec.principles == []
    (root,) = doc_spec.sections
    assert (root.id, root.level, root.line) == ("top", 1, 1)
    assert [c.id for c in root.children] == ["safety", "examples"]
    safety, examples = root.children
    assert [(c.id, c.title, c.level) for c in safety.children] == [
        ("oversight", "Oversight", 3), ("oversight-2", "Oversight", 3)]
    assert [c.id for c in examples.children] == ["overview"]
    assert [s.id for s in doc_spec.all_sections()] == ["top", "safety", "oversight", "oversight-2", "examples",
                                                        "overview"]


def test_anchor_and_attributes(doc_spec):
    root = doc_spec.sections[0]
    assert root.attrs == {"id": "top", "version": "2"}
    safety = root.children[0]
    assert safety.title == "Safety rules"
    assert safety.attrs == {"id": "safety", "kind": "area", "owner": "policy team", "note": "single quoted"}
    overview = root.children[1].children[0]
    assert overview.title == "Overview" and overview.attrs == {"class": "note wide"}


def test_fences_and_non_headings_stay_in_text(doc_spec):
    oversight = doc_spec.sections[0].children[0].children[0]
    assert "# Not a heading inside a fence" in oversight.text and "## Still not" in oversight.text
    examples = doc_spec.sections[0].children[1]
    assert examples.title == "Examples"  # closing hashes removed
    assert "### not a heading (tilde fence)" in examples.text
    assert "still inside the tilde fence" in examples.text
    assert "####### seven hashes is text" in examples.text and "#no-space is text too" in examples.text
    assert examples.line == DOC.split("\n").index("## Examples ##") + 1 == 22


def test_only_full_variant(doc_spec, tmp_path):
    assert doc_spec.variants == ("full",)
    assert doc_spec.render("full") == DOC
    assert doc_spec.variant_sha256("full") == doc_spec.sha256
    with pytest.raises(MsmEvalError) as info:
        doc_spec.render("rules")
    message = str(info.value)
    assert "spec.md" in message and "only the 'full' variant" in message and "structured YAML spec" in message


def test_front_matter_sets_name_and_title_and_keeps_lines(tmp_path):
    text = "---\nname: house\ntitle: House Rules\nversion: 3\n---\n# Heading\n\ntext\n## Sub\n"
    spec = load_spec(write(tmp_path, "x.markdown", text))
    assert (spec.name, spec.title, spec.version) == ("house", "House Rules", "3")
    assert spec.sections[0].line == 6 and spec.sections[0].children[0].line == 9
    assert spec.render("full") == text


def test_slugs_are_unique_against_explicit_anchors():
    sections, intro = parse_markdown_sections("pre\n# A b\n# Safety {#a-b}\n# A   B!\n")
    assert intro == ["pre"]
    assert [s.id for s in sections] == ["a-b-2", "a-b", "a-b-3"]
    assert slugify("  Héllo, World: 2.0 ") == "héllo-world-20"
    assert slugify("!!!") == "section"


def test_heading_attrs_parser():
    assert parse_heading_attrs('Title {#x a=1 b="two words" c=\'q\'}') == (
        "Title", {"id": "x", "a": "1", "b": "two words", "c": "q"})
    assert parse_heading_attrs("No attrs here") == ("No attrs here", {})
    assert parse_heading_attrs('T {k="say \\"hi\\""}') == ("T", {"k": 'say "hi"'})
    assert parse_heading_attrs("Sets {a, b}") == ("Sets {a, b}", {})
    assert parse_heading_attrs("Empty {}") == ("Empty {}", {})


def test_bad_attributes_error(tmp_path):
    path = write(tmp_path, "bad.md", "# One\n\n## Two {#two key=\"unterminated}\n")
    with pytest.raises(MsmEvalError) as info:
        load_spec(path)
    message = str(info.value)
    assert "bad.md:3" in message and "heading attributes" in message and "{#anchor key=value" in message


def test_duplicate_explicit_anchor_error(tmp_path):
    path = write(tmp_path, "dup.md", "# One {#same}\ntext\n## Two {#same}\n")
    with pytest.raises(MsmEvalError) as info:
        load_spec(path)
    message = str(info.value)
    assert "dup.md:3" in message and "duplicate heading anchor '#same'" in message and "line 1" in message


def test_crlf_markdown_hashes_like_lf(tmp_path):
    lf = load_spec(write(tmp_path, "a.md", DOC))
    crlf_path = tmp_path / "b.md"
    crlf_path.write_bytes(DOC.replace("\n", "\r\n").encode())
    crlf = load_spec(crlf_path)
    assert crlf.sha256 == lf.sha256
    assert [s.id for s in crlf.all_sections()] == [s.id for s in lf.all_sections()]


def test_300kb_document_gives_a_complete_section_tree(tmp_path):
    # Speed is measured in benchmarks/markdown_spec_load.py, not here.
    text = large_markdown(300_000)
    assert len(text) >= 300_000
    path = write(tmp_path, "big.md", text)
    spec = load_spec(path)
    sections = spec.all_sections()
    assert len(sections) > 500
    assert len({s.id for s in sections}) == len(sections)
    assert all("not a heading" not in s.title and "also not" not in s.title for s in sections)
    anchored = [s for s in sections if re.fullmatch(r"sec\d+", s.id)]
    assert anchored and all(s.attrs["note"] == "a quoted value" for s in anchored)
    assert sum(len(s.text) for s in sections) > 250_000


def test_leading_thematic_break_is_not_front_matter(tmp_path):
    text = "---\n\n# Title\n\ntext\n\n---\n\n## Next\n"
    spec = load_spec(write(tmp_path, "rule.md", text))
    assert spec.title == "Title" and spec.name == "rule"
    assert [s.id for s in spec.all_sections()] == ["title", "next"]
    assert spec.sections[0].children[0].line == 9


def test_malformed_front_matter_reports_line(tmp_path):
    path = write(tmp_path, "fm.md", "---\nname: x\ntitle: a: b\n---\n# A\n")
    with pytest.raises(MsmEvalError) as info:
        load_spec(path)
    message = str(info.value)
    assert "fm.md:3:" in message and "malformed YAML front matter" in message and "between the '---' lines" in message
