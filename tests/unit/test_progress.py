"""`track` under WORKBENCH_PROGRESS: bars, one summary line per loop, or nothing."""

import pytest

from workbench.common.runtime import progress_mode, track


@pytest.mark.parametrize("value,mode", [("0", "off"), ("off", "off"), ("1", "bar"),
                                        ("bar", "bar"), ("summary", "summary")])
def test_modes(monkeypatch, value, mode):
    monkeypatch.setenv("WORKBENCH_PROGRESS", value)
    assert progress_mode() == mode


def test_auto_is_summary_off_a_terminal(monkeypatch):
    monkeypatch.delenv("WORKBENCH_PROGRESS", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "ipykernel", raising=False)
    assert progress_mode() == "summary"  # pytest captures stderr: not a TTY


def test_summary_prints_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_PROGRESS", "summary")
    assert list(track(range(5), desc="scoring")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scoring: 5 in ")
    with track(total=4, desc="manual") as bar:
        bar.update(2)
        bar.set_postfix(loss=1.0)
    assert capsys.readouterr().err.startswith("manual: 2/4 in ")


def test_off_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_PROGRESS", "0")
    assert sum(track(range(3), desc="x")) == 3
    assert capsys.readouterr().err == ""
