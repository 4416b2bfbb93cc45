"""Reading triple files: CRLF, blanks, errors with file:line, duplicates reported."""

from __future__ import annotations

import logging

import pytest

from gnn_inn.data import DataFormatError, KnowledgeGraph, read_triples


def _w(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


def test_crlf_trailing_blanks_and_header(tmp_path):
    p = _w(tmp_path, "a.txt", "head\trelation\ttail\r\na\tr\tb \r\nb\tr\tc\t\r\n\r\n\n")
    assert read_triples(p) == [("a", "r", "b"), ("b", "r", "c")]


@pytest.mark.parametrize("text,line,what", [
    ("a\tr\tb\na\tr\n", 2, "expected 3 tab-separated fields"),
    ("a\tr\tb\nx\ty\tz\tw\n", 2, "got 4"),
    ("a\tr\tb\na\t\tb\n", 2, "empty field (relation)"),
    ("head\trelation\ttail\na\tr\tb\nhead\trelation\ttail\n", 3, "header line repeated"),
    ("a\tr\tb\n\nc\tr\td\n", 2, "blank line"),
])
def test_errors_name_file_and_line(tmp_path, text, line, what):
    p = _w(tmp_path, "bad.txt", text)
    with pytest.raises(DataFormatError) as e:
        read_triples(p)
    assert f"bad.txt:{line}:" in str(e.value) and what in str(e.value)


def test_duplicates_reported(tmp_path, caplog):
    p = _w(tmp_path, "d.txt", "a\tr\tb\nc\tr\td\na\tr\tb\na\tr\tb\n")
    with caplog.at_level(logging.WARNING):
        assert read_triples(p) == [("a", "r", "b"), ("c", "r", "d")]
    assert "2 duplicate triple(s) dropped" in caplog.text and "line 3" in caplog.text
    assert len(read_triples(p, duplicates="keep")) == 4
    with pytest.raises(DataFormatError, match=r"d\.txt:3: duplicate"):
        read_triples(p, duplicates="error")


def test_directory_missing_file_and_unseen_entities(tmp_path):
    _w(tmp_path, "train.txt", "a\tr\tb\nb\tr\tc\n")
    _w(tmp_path, "valid.txt", "a\tr\tc\n")
    with pytest.raises(FileNotFoundError, match="missing test.txt"):
        KnowledgeGraph.from_directory(tmp_path)
    _w(tmp_path, "test.txt", "c\tr\tz\nz\ts\ta\n")
    kg = KnowledgeGraph.from_directory(tmp_path)
    assert kg.entity_names == ["a", "b", "c", "z"] and kg.relation_names == ["r", "s"]
    s = kg.stats()
    assert s["unseen_test_triples"] == 2 and s["unseen_entities"] == 1
    assert s["unseen_valid_triples"] == 0
