"""The kept results cannot drift: ``docs/results.md`` is what ``benchmarks/results_page.py`` makes of
``benchmarks/results/*.json``, the files are named after their benchmark (not an issue) and hold no machine's absolute
paths, and the library quotes no measured milliseconds and no issue's target."""

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

from conftest import ROOT

RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"
# A POSIX absolute path in a string (a whole value, or a word of a command line), not a URL or a fraction.
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/[\w.@+~-]")
# What the library must not quote: a measured latency, an issue (its number or its target).
LIBRARY_PATTERNS = {
    "a measured time": re.compile(r"\d+(\.\d+)? ?(ms|us|µs)\b"),
    "an issue": re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    "an issue number": re.compile(r"(?<![\w&])#\d+\b"),
}


def _page_module() -> Any:
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *_strings(item)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_the_page_regenerates_byte_identically_from_the_json() -> None:
    page = _page_module().render_page(RESULTS)
    assert PAGE.read_text() == page, "docs/results.md is out of date: run python benchmarks/results_page.py"


def test_the_page_follows_a_changed_figure_and_check_says_so(tmp_path: Path) -> None:
    module = _page_module()
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    page = tmp_path / "results.md"
    assert module.main(["--results", str(results), "--page", str(page)]) == 0
    assert module.main(["--results", str(results), "--page", str(page), "--check"]) == 0
    record = json.loads((results / "clinc_offline_recipe_report_seed0.json").read_text())
    record[0]["accuracy"] = 0.123456
    (results / "clinc_offline_recipe_report_seed0.json").write_text(json.dumps(record))
    assert "| teacher fp32 | 0.1235 |" in module.render_page(results)
    assert module.main(["--results", str(results), "--page", str(page), "--check"]) == 1


def test_every_section_names_its_machine_as_the_json_records_it() -> None:
    module = _page_module()
    settings = json.loads((RESULTS / "clinc_offline_recipe_settings_seed0.json").read_text())
    page = module.render_page(RESULTS)
    section = page.split("## clinc_offline_recipe seed0\n")[1].split("\n## ")[0]
    assert f"Measured on: {settings['machine']['cpu']}, {settings['machine']['logical_cpus']} CPUs" in section
    assert page.count("\nMeasured on: ") == page.count("\n## ")


def test_no_result_file_is_named_after_an_issue() -> None:
    files = sorted(RESULTS.glob("*.json"))
    assert files
    named = [path.name for path in files if re.search(r"issue|#\d|_run\d|rerun", path.name, re.IGNORECASE)]
    assert named == [], f"name these after their benchmark or recipe (history is git's): {named}"


def test_no_result_file_holds_an_absolute_path() -> None:
    found = {
        path.name: [s for s in _strings(json.loads(path.read_text())) if ABSOLUTE.search(s)]
        for path in sorted(RESULTS.glob("*.json"))
    }
    found = {name: strings[:3] for name, strings in found.items() if strings}
    assert found == {}, f"absolute paths in result files (write them with relative_paths): {found}"


def test_the_library_quotes_no_measured_time_and_no_issue() -> None:
    caught = ["a query took 0.22 ms", "Issue 14's target", "(issue #12)", "see #15 for why"]
    assert all(any(p.search(line) for p in LIBRARY_PATTERNS.values()) for line in caught)
    found = []
    for path in sorted((ROOT / "lightning_distill").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for what, pattern in LIBRARY_PATTERNS.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}")
    assert found == [], "measured figures belong in docs/results.md, targets in the user's options:\n" + "\n".join(
        found
    )
