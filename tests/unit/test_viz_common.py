from workbench.viz.common import anchor_table, table_figure


def test_table_figure_columns_and_formatting():
    fig = table_figure([{"a": 1.23456, "b": "x"}, {"a": 2, "c": None}])
    t = fig.data[0]
    assert list(t.header.values) == ["a", "b", "c"]
    assert list(t.cells.values[0]) == ["1.235", "2"] and list(t.cells.values[2]) == ["", ""]


def test_anchor_table_puts_our_rows_first():
    fig = anchor_table("no-such-paper", {"table": [{"method": "ours", "ppl": 1.0}]})
    assert list(fig.data[0].cells.values[0]) == ["this run"]
