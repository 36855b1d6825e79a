"""The run matrix: validation errors name the file and key; expansion; parameter checks."""

from __future__ import annotations

import json

import pytest

from analysis.pipeline.matrix import (
    MatrixError,
    check_parameters,
    country_name,
    expand_runs,
    load_report,
)


def load(project, **kwargs):
    return load_report(project.report, project_root=project.root, groups_file=project.groups_file, **kwargs)


def edit(project, old: str, new: str) -> None:
    text = project.report.read_text()
    assert old in text
    project.report.write_text(text.replace(old, new))


def test_expansion_lists_every_run_and_why_some_do_not_apply(tiny_project):
    ctx = load(tiny_project)
    runs = {r.run_id: r for r in expand_runs(ctx)}
    assert list(runs) == [
        "tiny/women/KEN", "tiny/women/UGA", "tiny/women/SEN",
        "tiny/persons_with_disabilities/KEN", "tiny/persons_with_disabilities/UGA",
        "tiny/persons_with_disabilities/SEN", "tiny_synthesis",
    ]
    assert runs["tiny/women/SEN"].status == "not_applicable"
    assert "women" in runs["tiny/women/SEN"].reason and "SEN" in runs["tiny/women/SEN"].reason
    assert runs["tiny/persons_with_disabilities/SEN"].sources == ["src_b"]
    assert runs["tiny/women/KEN"].sources == ["src_a"]
    # Inputs: the processed file of the sources it reads; the synthesis reads all_estimates.csv.
    assert [p.rsplit("/", 1)[-1] for p in runs["tiny/persons_with_disabilities/SEN"].inputs] == ["src_b.parquet"]
    assert runs["tiny_synthesis"].stage == 1 and runs["tiny/women/KEN"].stage == 0
    assert runs["tiny_synthesis"].inputs[-1].endswith("outputs/tables/all_estimates.csv")
    assert ctx.country_names == {"KEN": "Kenya", "UGA": "Uganda", "SEN": "Senegal"}


def test_parameters_are_resolved_against_the_notebook(tiny_project):
    ctx = load(tiny_project)
    runs = check_parameters(expand_runs(ctx), ctx.report_path)
    params = runs[0].parameters
    assert params["group"] == "women" and params["country"] == "KEN" and params["source"] is None
    assert params["sources"] == ["src_a"]  # declared by the notebook, so injected
    assert "all_estimates" not in params  # not declared by tiny.ipynb, so not injected
    assert params["output_dir"].endswith("outputs/tiny/women/KEN")
    assert "all_estimates" in runs[-1].parameters


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("title: Tiny report", "title: Tiny report\ncolour: blue", "key 'colour': unknown key"),
        ("    scope: once", "    scope: once\n    scop: once", "key 'chapters.tiny_synthesis.scop': unknown key"),
        ("groups: [women,", "groups: [wimmen,", "unknown group 'wimmen'"),
        ("[KEN, UGA, SEN]", "[KEN, UGA, XXX]", "key 'countries.XXX': not an ISO 3166-1 alpha-3 code"),
        ("scope: once", "scope: weekly", "key 'chapters.tiny_synthesis.scope'"),
        ("after: [tiny]", "after: [tinny]", "key 'chapters.tiny_synthesis.after': unknown chapter 'tinny'"),
        ("notebook: notebooks/tiny.ipynb", "notebook: notebooks/nope.ipynb", "key 'chapters.tiny.notebook'"),
    ],
)
def test_invalid_report_is_a_one_line_error_naming_file_and_key(tiny_project, old, new, expected):
    edit(tiny_project, old, new)
    with pytest.raises(MatrixError) as info:
        load(tiny_project)
    message = str(info.value)
    assert expected in message
    assert str(tiny_project.report) in message
    assert "\n" not in message


def test_chapter_restriction_outside_the_matrix_is_an_error(tiny_project):
    edit(tiny_project, "    title: Tiny chapter", "    title: Tiny chapter\n    countries: [KEN, BGD]")
    with pytest.raises(MatrixError, match=r"chapters.tiny.countries': country 'BGD' is not in the matrix"):
        load(tiny_project)


def test_cycle_in_after_is_an_error(tiny_project):
    edit(tiny_project, "    title: Tiny chapter", "    title: Tiny chapter\n    after: [tiny_synthesis]")
    with pytest.raises(MatrixError, match="cycle"):
        load(tiny_project)


def test_undeclared_parameter_names_notebook_and_key(tiny_project):
    edit(tiny_project, "parameters: {control_dir:", "parameters: {colour: red, control_dir:")
    ctx = load(tiny_project)
    with pytest.raises(MatrixError) as info:
        check_parameters(expand_runs(ctx), ctx.report_path)
    assert "chapters.tiny.parameters: 'colour' is not declared in tiny.ipynb" in str(info.value)


def test_mistyped_parameter_names_the_declared_type(tiny_project):
    text = tiny_project.report.read_text()
    tiny_project.report.write_text(text.replace(f"control_dir: {tiny_project.control}", "control_dir: 3"))
    ctx = load(tiny_project)
    with pytest.raises(MatrixError, match=r"'control_dir' = 3 is int, but tiny.ipynb declares it as str"):
        check_parameters(expand_runs(ctx), ctx.report_path)


def test_missing_standard_parameter_names_the_notebook(tiny_project):
    path = tiny_project.root / "notebooks" / "tiny.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = [line for line in cell["source"] if not line.startswith("source =")]
    path.write_text(json.dumps(nb))
    ctx = load(tiny_project)
    with pytest.raises(MatrixError, match=r"tiny.ipynb: parameter 'source' is missing from the cell tagged 'parameters'"):
        check_parameters(expand_runs(ctx), ctx.report_path)


def test_country_names_come_from_pycountry_and_can_be_overridden(tiny_project):
    edit(tiny_project, "countries: [KEN, UGA, SEN]", "countries: {KEN: {}, UGA: null, SEN: {name: Sénégal}}")
    ctx = load(tiny_project)
    assert ctx.country_names == {"KEN": "Kenya", "UGA": "Uganda", "SEN": "Sénégal"}
    assert country_name("BGD") == "Bangladesh"
    assert country_name("XYZ") is None


def test_no_processed_data_makes_every_run_not_applicable_with_the_fix(tiny_project):
    for path in tiny_project.processed.glob("*.parquet"):
        path.unlink()
    ctx = load(tiny_project)
    runs = [r for r in expand_runs(ctx) if r.scope != "once"]
    assert all(r.status == "not_applicable" for r in runs)
    assert "python -m analysis ingest" in runs[0].reason
