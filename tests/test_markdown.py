from medllm.markdown import cell, table


def test_table_layout_and_escaping():
    lines = table(["name", "note"], [["a|b", "two\nlines"], [1, 0.5]])
    assert lines == [
        "| name | note |",
        "| --- | --- |",
        "| a\\|b | two lines |",
        "| 1 | 0.5 |",
    ]
    assert cell("x|y\nz") == "x\\|y z"
