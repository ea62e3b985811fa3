"""The abuse suite's command (tools/abuse.py) works: it runs cases against a real
tracker and prints a row for each. Its figures are not asserted here, only that
the tool measures and reports; the cases run at tiny sizes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
from abuse_suite import cli  # noqa: E402
from abuse_suite.common import Env, Row  # noqa: E402


def run_tool(tmp_path, *args):
    out = tmp_path / "abuse.json"
    result = subprocess.run([sys.executable, str(TOOLS / "abuse.py"), "--json", str(out)] + list(args),
                            capture_output=True, text=True, timeout=300)
    return result, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.e2e
def test_cheap_cases_against_a_real_tracker_each_get_a_verdict(tmp_path):
    result, report = run_tool(tmp_path, "--case", "numwant", "--case", "line-digits",
                              "--case", "sigkill-burst", "--size", "sigkill_announces=2000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [row["key"] for row in report["rows"]] == ["numwant", "line-digits", "sigkill-burst"]
    for row in report["rows"]:
        assert row["held"] in (True, False), row
        assert row["target"] and row["measured"]
    assert report["sizes"]["sigkill_announces"] == 2000
    assert "2000 acknowledged" in report["rows"][2]["measured"]
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3  # header, rule, one row a case


def test_a_case_that_fails_is_a_row_saying_why_and_the_tool_goes_on(monkeypatch, tmp_path):
    def broken(env):
        raise ConnectionRefusedError("no tracker")
    monkeypatch.setitem(cli.CASES, "broken", broken)
    row = cli.run_case("broken", Env({}, workdir=tmp_path), timeout_s=60)
    assert row.held is None
    assert "not measured: ConnectionRefusedError: no tracker" in row.measured


def test_sizes_default_full_and_overridden():
    assert cli.parse_sizes(False, [])["random_hashes"] == 100_000
    assert cli.parse_sizes(True, [])["random_hashes"] == 1_000_000
    assert cli.parse_sizes(False, ["random-hashes=5"])["random_hashes"] == 5
    for bad in ("random_hashes", "nothing=5", "haves=-1", "haves=0", "haves=x"):
        with pytest.raises(ValueError, match="--size wants KEY=N"):
            cli.parse_sizes(False, [bad])


def test_table_marks_held_broken_and_unmeasured():
    table = cli.markdown([Row("a", "t", "1 | 2", True), Row("b", "t", "3", False),
                          Row("c", "", "not measured: x", None)])
    assert table.splitlines()[2:] == ["| a | t | 1 / 2 | held |", "| b | t | 3 | broken |",
                                      "| c |  | not measured: x | – |"]


def test_usage_errors_exit_2(tmp_path):
    result, report = run_tool(tmp_path, "--size", "nothing=1")
    assert result.returncode == 2 and report is None
    assert result.stderr.startswith("abuse: --size wants KEY=N")
