"""XML parsing of callback bodies: repeated tags become lists, in order, however many."""

from __future__ import annotations

from hub.sdk.callbacks import parse_xml


def test_repeated_tags_become_one_list_in_order() -> None:
    xml = "<xml><a>1</a><b>x</b><a>2</a><a>3</a><c><a>9</a></c></xml>"
    assert parse_xml(xml, source="s") == {"a": ["1", "2", "3"], "b": "x", "c": {"a": "9"}}


def test_a_body_of_many_repeated_items_keeps_every_one() -> None:
    # 100,000 items fit in a 1 MiB body; building the list by copying it per item took ~10 s here
    n = 100_000
    xml = "<xml>" + "<a>1</a>" * n + "</xml>"
    parsed = parse_xml(xml, source="s")
    assert len(parsed["a"]) == n and parsed["a"][-1] == "1"
