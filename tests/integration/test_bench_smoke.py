"""Run `mes bench overhead` end to end, small, as a user would."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_mes_bench_overhead_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "overhead.json"
    mes = os.path.join(os.path.dirname(sys.executable), "mes")
    result = subprocess.run([mes, "bench", "overhead", "--count", "20", "--runs", "1",
                             "--json", str(out)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "added by MES" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["scenario"] == "overhead"
    assert figures["runs"]["mes"][0]["count"] == 20 and figures["runs"]["mes"][0]["errors"] == 0
