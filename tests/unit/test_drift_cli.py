"""``mlcycle monitor drift`` on local files, and the self-contained HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle.cli import main
from mlcycle.commands.monitor import DRIFT_EXIT_CODE
from mlcycle.example import churn
from mlcycle.monitoring import report_html
from mlcycle.monitoring.drift import compare


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift")
    paths = {
        "reference": root / "reference.csv",
        "same": root / "same.parquet",
        "drifted": root / "drifted.csv.gz",
    }
    churn.generate(3000, seed=1, drift=0.0).to_csv(paths["reference"], index=False)
    churn.generate(3000, seed=2, drift=0.0).to_parquet(paths["same"])
    churn.generate(3000, seed=3, drift=1.0).to_csv(paths["drifted"], index=False)
    return paths


def test_drift_between_csv_and_parquet_prints_a_table(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "drift", str(files["reference"]), str(files["same"])]) == 0
    out = capsys.readouterr().out
    assert "column types: the 'churn' dataset contract" in out
    assert "dataset: no drift" in out


def test_drifted_data_with_json_html_and_model_monitor_files(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html, directory = tmp_path / "report.html", tmp_path / "mm"
    argv = ["monitor", "drift", str(files["reference"]), str(files["drifted"]), "--json"]
    code = main([*argv, "--html", str(html), "--model-monitor", str(directory), "--fail-on-drift"])
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"]["drifted"] is True and code == DRIFT_EXIT_CODE
    assert html.read_text().startswith("<!DOCTYPE html>")
    names = sorted(p.name for p in directory.iterdir())
    assert names == [
        "baseline_statistics.json",
        "constraint_violations.json",
        "constraints.json",
        "statistics.json",
    ]
    violations = json.loads((directory / "constraint_violations.json").read_text())["violations"]
    assert any(v["constraint_check_type"] == "baseline_drift_check" for v in violations)


def test_column_types_are_inferred_for_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    reference, current = tmp_path / "a.csv", tmp_path / "b.csv"
    for path, start in ((reference, 0), (current, 500)):
        ids = [f"id-{i}" for i in range(start, start + 500)]
        pd.DataFrame({"id": ids, "x": rng.normal(size=500), "c": rng.choice(["u", "v"], 500)}).to_csv(path)
    assert (
        main(["monitor", "drift", str(reference), str(current), "--test", "x=psi", "--exclude", "Unnamed: 0"])
        == 0
    )
    out = capsys.readouterr().out
    assert "inferred from the reference's column types; skipped as identifiers: id" in out
    assert re.search(r"^x\s+numeric\s+psi", out, re.MULTILINE)


def test_errors_are_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "drift", str(tmp_path / "nope.csv"), str(tmp_path / "nope.csv")]) == 1
    assert "no such file" in capsys.readouterr().err
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    assert main(["monitor", "drift", str(odd), str(odd)]) == 1


def test_the_html_report_is_self_contained_and_escapes_names() -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"<b>x</b>": rng.normal(size=800), "plan": rng.choice(["a", "<script>"], 800)})
    current = pd.DataFrame({"<b>x</b>": rng.normal(1, 1, size=800), "plan": rng.choice(["a", "new"], 800)})
    report = compare(reference, current, {"<b>x</b>": "numeric", "plan": "categorical"})
    page = report_html.render(report, title="t")
    assert page.count("<svg") == 2 and "<rect" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script" not in page
    for reference_to_elsewhere in ("http://", "https://", " src=", " href=", "url(", "@import", "<link"):
        assert reference_to_elsewhere not in page
    assert "dataset drift" in page or "no dataset drift" in page


def test_the_html_report_of_an_insufficient_window_says_so() -> None:
    frame = pd.DataFrame({"x": np.arange(5.0)})
    page = report_html.render(compare(frame, frame, {"x": "numeric"}))
    assert "insufficient data" in page
