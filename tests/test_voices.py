"""Voices: agreement statistics against reference values, properties, consensus and theme shares,
quotes, and the demo's planted truth (theme x group pattern, disagreement rate, personal data)."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import config
from analysis.voices import agreement as ag
from analysis.voices.codebook import Code, Codebook
from analysis.voices.quotes import QUOTE_COLUMNS, select_quotes
from analysis.voices.scrub import Scrubber
from analysis.voices.themes import consensus, respondent_themes, theme_indicator, theme_shares

RESULTS = Path(__file__).parent / "results" / "agreement.json"
TOL = 1e-6


@pytest.fixture(scope="module")
def reference():
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def _krippendorff_data(reference):
    rows = reference["krippendorff_2011"]["reliability_data_coders_by_units"]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


# --------------------------------------------------------------------------------------------
# Reference values (tests/results/agreement.json, the copy of ../shared/golden/agreement.json that
# tests/test_reference_results.py keeps equal to the original)


@pytest.mark.parametrize("level", ag.LEVELS)
def test_krippendorff_alpha_reproduces_krippendorff_2011(reference, level):
    alpha = ag.krippendorff_alpha(_krippendorff_data(reference), level)
    assert alpha == pytest.approx(reference["krippendorff_2011"][level], abs=TOL)


def test_cohens_kappa_and_its_standard_error(reference):
    result = ag.cohens_kappa(reference["cohen"]["table"])
    assert result.kappa == pytest.approx(reference["cohen"]["kappa"], abs=TOL)
    assert result.se == pytest.approx(reference["cohen"]["std_kappa"], abs=TOL)
    # under the null (Fleiss, Cohen & Everitt 1969): sqrt(pe + pe^2 - sum p_i. p_.i (p_i. + p_.i)) / (1 - pe) / sqrt(n)
    # with margins rows (.5, .5), columns (.6, .4): pe = .5, sum = .5*.6*1.1 + .5*.4*.9 = .51
    assert result.se0 == pytest.approx(np.sqrt(0.5 + 0.25 - 0.51) / 0.5 / np.sqrt(50), abs=TOL)


def test_fleiss_kappa_on_the_textbook_example(reference):
    kappa = ag.fleiss_kappa(reference["fleiss"]["counts_subject_by_category"])
    assert kappa == pytest.approx(reference["fleiss"]["kappa"], abs=TOL)


# --------------------------------------------------------------------------------------------
# Properties


def _random_codings(rng, n_units=300, n_coders=2, n_codes=6, flip=0.25, skip=0.1) -> pd.DataFrame:
    rows = []
    for u in range(n_units):
        truth = set(rng.choice(n_codes, size=rng.integers(1, 3), replace=False).tolist())
        for c in range(n_coders):
            if c > 0 and rng.random() < skip:
                continue
            codes = set(truth)
            if rng.random() < flip:
                codes ^= {int(rng.integers(n_codes))}
            for code in codes or {"none"}:
                rows.append((f"u{u}", f"coder{c}", str(code)))
    return pd.DataFrame(rows, columns=["response_id", "coder", "code"])


def test_perfect_agreement_is_one_and_relabelling_changes_nothing():
    rng = np.random.default_rng(3)
    data = rng.integers(1, 5, size=(3, 40)).astype(float)
    data[1] = data[0]
    data[2] = data[0]
    assert ag.krippendorff_alpha(data) == pytest.approx(1.0)
    noisy = data.copy()
    noisy[1, ::3] = rng.integers(1, 5, size=noisy[1, ::3].shape)
    relabelled = np.vectorize({1.0: 40.0, 2.0: 7.0, 3.0: -2.0, 4.0: 13.0}.get)(noisy)
    assert ag.krippendorff_alpha(relabelled, "nominal") == pytest.approx(ag.krippendorff_alpha(noisy, "nominal"))


def test_masi_alpha_of_single_codes_is_nominal_alpha():
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4, size=(3, 60)).astype(float)
    same = rng.random(60) < 0.6
    data[1, same] = data[0, same]
    data[2, ::4] = np.nan
    units = [[frozenset([v]) for v in data[:, u] if not np.isnan(v)] for u in range(data.shape[1])]
    assert ag.masi_alpha(units) == pytest.approx(ag.krippendorff_alpha(data), abs=1e-12)
    assert ag.masi_distance(frozenset("ab"), frozenset("ab")) == 0
    assert ag.masi_distance(frozenset("ab"), frozenset("a")) == pytest.approx(1 - 0.5 * 2 / 3)
    assert ag.masi_distance(frozenset("ab"), frozenset("bc")) == pytest.approx(1 - (1 / 3) * (1 / 3))
    assert ag.masi_distance(frozenset("a"), frozenset("b")) == 1


@pytest.mark.parametrize("n_coders", [2, 3])
def test_agreement_table_agrees_with_the_statistics_computed_one_code_at_a_time(n_coders):
    coded = _random_codings(np.random.default_rng(n_coders), n_coders=n_coders)
    table = ag.agreement_table(coded, replicates=200, seed=1).set_index("code")
    for code in ["0", "3", "5"]:
        reliability = ag.reliability_from_long(coded, code)
        assert table.loc[code, "alpha"] == pytest.approx(ag.krippendorff_alpha(reliability), abs=1e-12)
        pairable = (~np.isnan(reliability)).sum(axis=0) >= 2
        assert table.loc[code, "n_units"] == pairable.sum()
        full = reliability[:, ~np.isnan(reliability).any(axis=0)]
        if n_coders == 2:
            a, b = full
            two_by_two = [[((a == 1) & (b == 1)).sum(), ((a == 1) & (b == 0)).sum()],
                          [((a == 0) & (b == 1)).sum(), ((a == 0) & (b == 0)).sum()]]
            expected = ag.cohens_kappa(two_by_two)
            assert table.loc[code, "cohen_kappa"] == pytest.approx(expected.kappa, abs=1e-12)
            assert table.loc[code, "cohen_kappa_se"] == pytest.approx(expected.se, abs=1e-12)
            assert table.loc[code, "percent_agreement"] == pytest.approx(expected.observed, abs=1e-12)
        else:
            counts = np.stack([(full == 0).sum(axis=0), (full == 1).sum(axis=0)], axis=1)
            assert table.loc[code, "fleiss_kappa"] == pytest.approx(ag.fleiss_kappa(counts), abs=1e-12)
        assert table.loc[code, "alpha_ci_low"] <= table.loc[code, "alpha"] <= table.loc[code, "alpha_ci_high"]
    sets = coded.groupby(["response_id", "coder"])["code"].apply(frozenset)
    units = [list(group) for _, group in sets.groupby(level=0)]
    assert table.loc[ag.OVERALL, "alpha"] == pytest.approx(ag.masi_alpha(units), abs=1e-12)


def test_bootstrap_is_reproducible_with_its_seed_and_covers_like_a_unit_bootstrap():
    coded = _random_codings(np.random.default_rng(11))
    first = ag.agreement_table(coded, replicates=300, seed=7)
    again = ag.agreement_table(coded, replicates=300, seed=7)
    other = ag.agreement_table(coded, replicates=300, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["alpha_ci_low"], other["alpha_ci_low"])
    # the pattern bootstrap is the unit bootstrap: compare its spread with a plain one on one code
    reliability = ag.reliability_from_long(coded, "2")
    rng = np.random.default_rng(0)
    plain = [ag.krippendorff_alpha(reliability[:, rng.integers(0, reliability.shape[1], reliability.shape[1])])
             for _ in range(300)]
    row = first.set_index("code").loc["2"]
    width = row["alpha_ci_high"] - row["alpha_ci_low"]
    plain_width = np.quantile(plain, 0.975) - np.quantile(plain, 0.025)
    assert width == pytest.approx(plain_width, rel=0.3)


def test_disagreements_list_every_split_decision():
    coded = pd.DataFrame([("r1", "a", "x"), ("r1", "b", "x"), ("r2", "a", "x"), ("r2", "b", "y"),
                          ("r3", "a", "y"), ("r3", "b", "y"), ("r3", "c", "x")],
                         columns=["response_id", "coder", "code"])
    table = ag.disagreements(coded)
    got = {(r.response_id, r.code, r.applied_by, r.not_applied_by) for r in table.itertuples()}
    assert got == {("r2", "x", "a", "b"), ("r2", "y", "b", "a"), ("r3", "x", "c", "a, b"), ("r3", "y", "a, b", "c")}


def test_bad_agreement_input_is_named():
    with pytest.raises(ag.AgreementError, match="square"):
        ag.cohens_kappa([[1, 2, 3]])
    with pytest.raises(ag.AgreementError, match="same number"):
        ag.fleiss_kappa([[1, 1], [2, 1]])
    with pytest.raises(ag.AgreementError, match="no column 'coder'"):
        ag.agreement_table(pd.DataFrame({"response_id": [1], "code": ["x"]}))


# --------------------------------------------------------------------------------------------
# Consensus and theme shares


BOOK = Codebook(id="t", title="t", codes={
    "h": Code(label="H", theme="access_to_health"), "f": Code(label="F", theme="food_insecurity"),
    "none": Code(label="N", special="no_theme"), "nc": Code(label="NC", special="not_codable"),
})


def test_consensus_is_the_resolved_coder_or_a_strict_majority():
    coded = pd.DataFrame([
        ("r1", "a", "h"), ("r1", "b", "h"), ("r1", "c", "f"),          # h: 2 of 3 -> counts; f: 1 of 3 -> not
        ("r2", "a", "h"), ("r2", "b", "f"),                             # two coders split: nothing counts
        ("r3", "a", "h"), ("r3", "b", "f"), ("r3", "lead", "f"),        # adjudicated: f
        ("r4", "a", "nc"), ("r4", "b", "nc"),                           # not codable: out of the denominator
    ], columns=["response_id", "coder", "code"])
    counted = consensus(coded, resolved_coder="lead")
    assert set(zip(counted["response_id"], counted["code"])) == {("r1", "h"), ("r3", "f"), ("r4", "nc")}
    assert set(counted.loc[counted["response_id"] == "r3", "rule"]) == {"resolved"}
    themes = respondent_themes(coded, BOOK, resolved_coder="lead").set_index("response_id")
    assert list(themes.index) == ["r1", "r2", "r3"]
    assert themes[theme_indicator("access_to_health")].to_dict() == {"r1": 1.0, "r2": 0.0, "r3": 0.0}
    assert themes[theme_indicator("food_insecurity")].to_dict() == {"r1": 0.0, "r2": 0.0, "r3": 1.0}


def _survey(n=400, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"respondent_id": [f"p{i}" for i in range(n)],
                          "sex": rng.choice(["female", "male"], n), "wt": rng.uniform(0.5, 2.0, n),
                          "stratum": rng.choice(["s1", "s2"], n), "cluster": rng.integers(0, 40, n).astype(str)})
    frame["cluster"] = frame["stratum"] + frame["cluster"]
    frame.attrs["design"] = {"sample_type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster",
                             "single_psu": "adjust"}
    return frame


def test_theme_shares_are_design_based_and_rare_mentions_are_suppressed():
    from analysis.survey import design_for, estimate_by

    survey = _survey()
    answered = survey.iloc[:300]
    themes = pd.DataFrame({"response_id": answered["respondent_id"],
                           theme_indicator("access_to_health"): (np.arange(300) % 3 == 0).astype(float),
                           theme_indicator("food_insecurity"): (np.arange(300) < 30).astype(float)})
    shares = theme_shares(survey, themes, by=["sex"], thresholds={"suppress_below": 25, "caution_below": 50})
    health = shares[shares["indicator"] == theme_indicator("access_to_health")].set_index("cell")
    # the same numbers as the survey estimator on the domain of answering respondents
    frame = survey.merge(themes.rename(columns={"response_id": "respondent_id"}), how="left")
    frame.attrs = survey.attrs
    direct = estimate_by(frame, design_for(frame), [theme_indicator("access_to_health")], by=["sex"],
                         statistic="proportion").set_index("cell")
    assert health.loc["female", "estimate"] == pytest.approx(direct.loc["female", "estimate"])
    assert health.loc["female", "se"] == pytest.approx(direct.loc["female", "se"])
    assert health.loc["all", "n_unweighted"] == 300  # respondents, not codes; unanswered are outside
    food = shares[shares["indicator"] == theme_indicator("food_insecurity")].set_index("cell")
    # 30 mentions overall, about 15 per sex: both sexes suppressed (and so nothing recovers them)
    assert (food.loc[["female", "male"], "flag"] == "suppressed").all()
    assert food.loc[["female", "male"], "estimate"].isna().all()
    assert "share of coded respondents mentioning the theme" in shares["method"].iloc[0]


# --------------------------------------------------------------------------------------------
# Quotes


def _quote_table():
    rows = []
    for i in range(60):
        rid = f"r{i}"
        for coder in ("a", "b"):
            rows.append({"response_id": rid, "coder": coder, "code": "h", "theme": "access_to_health",
                         "span": f"Answer {i}: the clinic closed, call +254 712 345 {i:03d}.",
                         "quote_consent": i % 2 == 0, "country": "KEN", "language": "en"})
    return pd.DataFrame(rows)


def test_quotes_only_from_consenting_and_not_withdrawn_respondents_scrubbed_and_reproducible():
    coded = _quote_table()
    balance = pd.Series(["x" if i < 30 else "y" for i in range(60)], index=[f"r{i}" for i in range(60)])
    group = pd.Series("Women", index=balance.index)
    scrubber = Scrubber()
    quotes = select_quotes(coded, BOOK, ["access_to_health"], balance=balance, attribution=group, per_theme=4,
                           seed=1, suppress_below=25, withdrawn=["r0", "r2"], scrubber=scrubber)
    assert list(quotes.columns) == QUOTE_COLUMNS
    numbers = [int(re.match(r"Answer (\d+)", q).group(1)) for q in quotes["quote"]]
    assert len(numbers) == 4 and all(n % 2 == 0 for n in numbers) and not {0, 2} & set(numbers)
    assert sum(n < 30 for n in numbers) == 2  # balanced across the two cells
    assert not quotes["quote"].str.contains("712").any() and scrubber.log() == {"phone": 4}
    assert set(quotes["attribution_group"]) == {"Women"} and set(quotes["attribution_country"]) == {"KEN"}
    again = select_quotes(coded, BOOK, ["access_to_health"], balance=balance, attribution=group, per_theme=4,
                          seed=1, suppress_below=25, withdrawn=["r0", "r2"])
    pd.testing.assert_frame_equal(quotes, again)
    other = select_quotes(coded, BOOK, ["access_to_health"], balance=balance, attribution=group, per_theme=4,
                          seed=2, suppress_below=25, withdrawn=["r0", "r2"])
    assert list(other["quote"]) != list(quotes["quote"])
    # a group x country cell under the threshold: the quote carries no attribution at all
    small = select_quotes(coded, BOOK, ["access_to_health"], attribution=group, per_theme=2, seed=1,
                          suppress_below=100)
    assert small["attribution_group"].isna().all() and small["attribution_country"].isna().all()
    # no consent column, no quotes
    assert select_quotes(coded.assign(quote_consent=False), BOOK, ["access_to_health"]).empty


# --------------------------------------------------------------------------------------------
# The demo collaborative: planted truth recovered, no planted personal data in any output


@pytest.fixture(scope="module")
def demo_processed(tmp_path_factory):
    from analysis.sources import ingest

    mp = pytest.MonkeyPatch()
    # 32 bytes in hex, as the salt rules require (fixed, so the test is reproducible)
    mp.setenv("ANALYSIS_ID_SALT", hashlib.sha256(b"voices test salt").hexdigest())
    out = tmp_path_factory.mktemp("processed")
    args = argparse.Namespace(sources=["demo_voices", "demo_youth"], raw_root=config.RAW_DIR, processed=out,
                              sources_dir=config.SOURCES_DIR, force=True)
    assert ingest.main(args) == 0
    yield out
    mp.undo()


@pytest.fixture(scope="module")
def truth():
    return json.loads((config.DEMO_DIR / "TRUTH.json").read_text(encoding="utf-8"))["voices"]


@pytest.fixture(scope="module")
def demo_tables(demo_processed):
    from analysis.sources import load_processed
    from analysis.voices.codebook import load_codebook

    coded = load_processed("demo_voices", demo_processed)
    survey = load_processed("demo_youth", demo_processed)
    return coded, survey, load_codebook("demo_voices")


def test_demo_recovers_the_planted_theme_by_group_pattern(demo_tables, truth):
    coded, survey, book = demo_tables
    themes = respondent_themes(coded, book, resolved_coder=truth["resolved_coder"])
    no_limits = {"suppress_below": 1, "caution_below": 1}
    for theme, planted in truth["theme_probability"].items():
        dimension = "disability" if "disability" in planted else "sex"
        shares = theme_shares(survey, themes, by=[dimension], margins=False, thresholds=no_limits)
        rows = shares[shares["indicator"] == theme_indicator(theme)].set_index("cell")
        for cell, characteristic in (("female", "female"), ("male", None), ("yes", "disability"), ("no", None)):
            if cell not in rows.index:
                continue
            expected = planted["base"] + (planted.get(characteristic, 0.0) if characteristic else 0.0)
            row = rows.loc[cell]
            assert abs(row["estimate"] - expected) < 4 * row["se"], (theme, cell, row["estimate"], expected)
    # the planted gap is found: women mention income and violence more often than men, clearly
    gap = theme_shares(survey, themes, by=["sex"], margins=False, thresholds=no_limits)
    income = gap[gap["indicator"] == theme_indicator("income_and_livelihoods")].set_index("cell")
    assert income.loc["female", "ci_low"] > income.loc["male", "ci_high"]


def test_demo_recovers_the_planted_disagreement_rate(demo_tables, truth):
    coded, _, book = demo_tables
    independent = coded[coded["coder"].isin(truth["coders"])]
    codes = [k for k, c in book.codes.items() if c.theme]
    table = ag.agreement_table(independent, codes, replicates=0, overall=False).set_index("code")
    for code, expected in truth["expected_disagreement_rate"].items():
        observed = 1 - table.loc[code, "percent_agreement"]
        se = np.sqrt(expected * (1 - expected) / table.loc[code, "n_units"])
        assert abs(observed - expected) < 4 * se + 0.005, (code, observed, expected)


def test_demo_withdrawals_are_gone_from_the_coded_table_and_the_survey(demo_tables, demo_processed, truth):
    coded, survey, _ = demo_tables
    withdrawn = json.loads((demo_processed / "demo_voices.withdrawn.json").read_text())["respondent_ids"]
    assert len(withdrawn) == truth["withdrawn"] > 0
    assert not set(withdrawn) & set(coded["response_id"]) and not set(withdrawn) & set(survey["respondent_id"])
    assert len(survey) == 2800 - truth["withdrawn"]


def _needles(truth) -> list[re.Pattern]:
    planted = truth["planted_personal_data"]
    words = [*planted["names"], *planted["places"]]
    patterns = [re.compile(rf"(?<!\w){re.escape(w)}(?!\w)") for w in words]
    # the last seven digits of each phone, whatever separates them
    patterns += [re.compile(r"[\s.-]*".join(re.sub(r"\D", "", p)[-7:])) for p in planted["phones"]]
    patterns += [re.compile(re.escape(a)) for a in planted["ages"]]
    return patterns


def test_no_planted_personal_data_reaches_any_output(demo_processed, truth, tmp_path):
    from analysis import chapters
    from analysis.chapters import voices as chapter

    assert truth["planted_personal_data"]["names"] and truth["planted_personal_data"]["phones"]
    texts = []
    for group, country in (("women", "KEN"), ("young_people", "SEN"), ("women", "UGA")):
        run = chapters.start_run("voices", group=group, country=country, sources=["demo_youth"],
                                 processed_dir=demo_processed, output_dir=tmp_path / group / country)
        voices = chapter.start_voices(run, seed=7)
        shares = chapter.voices_theme_shares(voices)
        agreement = chapter.voices_agreement(voices)
        chapters.save_table(run, shares, "theme_shares")
        chapters.save_table(run, agreement, "coder_agreement")
        quotes = chapter.voices_quotes(voices, shares)
        assert len(quotes) >= 2, (group, country, voices.intersect, len(voices.coded))
        chapter.save_quotes(voices, quotes)
        saved = chapter.voices_figure(voices, shares)
        texts += [chapter.voices_summary(voices, shares), chapter.voices_method_note(voices), saved.alt,
                  chapter.show_quotes(voices, quotes).data]
        for frame, caption in (chapter.voices_theme_table(voices, shares, agreement),
                               chapter.voices_code_agreement_table(voices, agreement), chapter.voices_redactions(voices)):
            texts += [frame.to_csv(), caption]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    coded = pd.read_parquet(demo_processed / "demo_voices.parquet")
    texts += ["\n".join(coded["span"].dropna()), (demo_processed / "demo_voices.log.json").read_text()]
    blob = "\n".join(texts)
    assert "[name]" in blob or "[phone]" in blob  # quotes with redactions were shown
    for pattern in _needles(truth):
        assert not pattern.search(blob), f"planted personal data in an output: {pattern.pattern}"


def test_a_translated_copy_of_the_labels_relabels_the_chapter(demo_processed, tmp_path, monkeypatch):
    import yaml

    from analysis import chapters
    from analysis.chapters import voices as chapter

    original = config.PARAMS_DIR / "voices.yml"
    data = yaml.safe_load(original.read_text(encoding="utf-8"))
    data["labels"]["summary"] = "RELABELLED {group} {country} {theme} {share} {low} {high} {reference_share} {reference}"
    copy = tmp_path / "params" / "voices.xx.yml"
    copy.parent.mkdir()
    copy.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ANALYSIS_LANG", "xx")
    assert chapter.translated(tmp_path / "params" / "voices.yml") == copy
    monkeypatch.setenv("ANALYSIS_LANG", "en")
    assert chapter.translated(tmp_path / "params" / "voices.yml") == tmp_path / "params" / "voices.yml"
    run = chapters.start_run("voices", group="women", country="KEN", sources=["demo_youth"],
                             processed_dir=demo_processed, output_dir=tmp_path / "out")
    voices = chapter.start_voices(run, config_file=copy)
    assert chapter.voices_summary(voices, chapter.voices_theme_shares(voices)).startswith("RELABELLED Women Kenya")


# --------------------------------------------------------------------------------------------
# The front page's Voices sections (findings.json of each Voices run, shown in its report theme)

FRONT_RUNS = (("women", "KEN"), ("persons_with_disabilities", "UGA"), ("young_people", "SEN"))


@pytest.fixture(scope="module")
def voices_front_page(demo_processed, tmp_path_factory):
    """Voices runs of the demo written as the pipeline writes them (tables, findings.json, a page),
    collected into ``all_estimates.csv``, and the front page built from them."""
    from analysis import chapters
    from analysis.chapters import voices as chapter
    from analysis.pipeline.front_page import write_front_page
    from analysis.pipeline.manifest import build_all_estimates
    from analysis.pipeline.matrix import load_report

    outputs = tmp_path_factory.mktemp("outputs")
    runs = {}
    for group, country in FRONT_RUNS:
        rel = Path("voices") / group / country
        run = chapters.start_run("voices", group=group, country=country, sources=["demo_youth"],
                                 processed_dir=demo_processed, output_dir=outputs / rel)
        voices = chapter.start_voices(run)
        voices.settings["bootstrap_replicates"] = 200  # intervals are not what these tests check
        shares = chapter.voices_theme_shares(voices)
        agreement = chapter.voices_agreement(voices)
        tables = [chapters.save_table(run, shares, "theme_shares"), chapters.save_table(run, agreement, "coder_agreement")]
        quotes = chapter.voices_quotes(voices, shares)
        chapter.write_findings(voices, chapter.voices_findings(voices, shares, agreement, quotes))
        (outputs / rel / "voices.html").write_text("<html></html>", encoding="utf-8")
        runs[f"voices/{group}/{country}"] = {
            "chapter": "voices", "group": group, "country": country, "status": "ok",
            "outputs": {"html": [str(rel / "voices.html")], "tables": [str(t.relative_to(outputs)) for t in tables]}}
    manifest = {"runs": runs, "sources": {"demo_youth": {"title": "Demo youth survey", "synthetic": True},
                                          "demo_voices": {"title": "Demo coded answers", "synthetic": True}}}
    build_all_estimates(manifest, outputs, set())
    (outputs / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    ctx = load_report(config.REPORT_FILE, processed_dir=demo_processed, outputs_dir=outputs)
    page = write_front_page(manifest, ctx)
    return outputs, page.read_text(encoding="utf-8")


def _voices_sections(page: str) -> dict[str, str]:
    """Theme id -> the HTML of the theme's Voices section on the front page."""
    themes = re.findall(r'<section class="theme"[^>]*data-theme="([^"]+)"(.*?)</section>\s*(?=<section class="theme"|</section>)',
                        page, flags=re.DOTALL)
    out = {}
    for theme, body in themes:
        found = re.search(r'<section class="voices"(.*?)</section>', body + "</section>", flags=re.DOTALL)
        if found:
            out[theme] = found.group(1)
    return out


def test_front_page_has_a_voices_section_for_every_theme_with_coded_data(voices_front_page):
    from analysis.voices.codebook import load_codebook

    _, page = voices_front_page
    sections = _voices_sections(page)
    assert set(load_codebook("demo_voices").themes) <= set(sections), sorted(sections)
    # the rules are stated on the page, with the threshold of the runs and the disclosure limit
    assert "0.667" in page and 'id="voices-rules"' in page
    shown = [s for s in sections.values() if 'class="voice"' in s]
    assert shown, "no theme share met the rules on the demo"
    assert any("<blockquote" in s for s in shown), "no consented quote on the front page"
    # a quote carries its own language and direction; its attribution is in the page's language
    quotes = re.findall(r"<blockquote>(.*?)</blockquote>", page, flags=re.DOTALL)
    assert quotes and all(re.match(r'<p dir="auto" lang="(en|fr|sw)">[^<]+</p><footer>— [^<]+</footer>$', q)
                          for q in quotes), quotes[:2]


def test_front_page_voices_numbers_equal_the_cited_rows(voices_front_page):
    assert_voices_cite_their_rows(*voices_front_page)


def assert_voices_cite_their_rows(outputs: Path, page: str, threshold: float = 0.667) -> None:
    """Every theme share of the page's Voices sections is its row of all_estimates.csv (flag ok),
    with the theme's agreement row at or above the threshold, and its sentence says the same."""
    estimates = pd.read_csv(outputs / "tables" / "all_estimates.csv")
    items = re.findall(r'<li class="voice"([^>]*)>', page)
    assert items
    for attributes in items:
        data = dict(re.findall(r'data-([\w-]+)="([^"]*)"', attributes))
        share = estimates[(estimates["source"] == data["source"]) & (estimates["country"] == data["country"])
                          & (estimates["group"] == data["group"]) & (estimates["indicator"] == data["indicator"])
                          & (estimates["breakdown"] == "comparison") & (estimates["cell"] == "group")]
        assert len(share) == 1, data
        row = share.iloc[0]
        assert row["flag"] == "ok"  # rule: only ok estimates
        assert float(data["estimate"]) == row["estimate"] and float(data["ci-low"]) == row["ci_low"]
        assert float(data["ci-high"]) == row["ci_high"] and int(data["n"]) == row["n_unweighted"]
        theme = data["indicator"].removeprefix("mentions_")
        alpha = estimates[(estimates["source"] == data["source"]) & (estimates["country"] == data["country"])
                          & (estimates["group"] == data["group"]) & (estimates["indicator"] == "coder_agreement_alpha")
                          & (estimates["breakdown"] == "theme") & (estimates["cell"] == theme)]
        assert len(alpha) == 1, data
        assert float(data["alpha"]) == alpha.iloc[0]["estimate"] >= threshold  # rule: agreement passes
        # the sentence shows the same numbers, rounded as the report writes them
        sentence = re.search(re.escape(attributes) + r">(.*?)</li>", page, flags=re.DOTALL).group(1)
        assert f"{row['estimate'] * 100:.0f}%" in sentence and f"{alpha.iloc[0]['estimate']:.2f}" in sentence


def test_front_page_voices_carry_no_personal_data(voices_front_page, demo_processed, truth, tmp_path):
    from analysis import chapters
    from analysis.chapters import voices as chapter
    from analysis.chapters.common import COMPARISON
    from analysis.disclosure import resolve_thresholds

    outputs, page = voices_front_page
    for pattern in _needles(truth):
        assert not pattern.search(page), f"planted personal data on the front page: {pattern.pattern}"
    limit = resolve_thresholds(None).suppress_below
    for path in sorted(outputs.rglob("findings.json")):
        blob = path.read_text(encoding="utf-8")
        for pattern in _needles(truth):
            assert not pattern.search(blob), f"planted personal data in {path}: {pattern.pattern}"
        items = json.loads(blob)
        group, country = items[0]["group"], items[0]["country"]
        run = chapters.start_run("voices", group=group, country=country, sources=["demo_youth"],
                                 processed_dir=demo_processed, output_dir=tmp_path / group / country)
        coded = chapter.start_voices(run).coded
        cell = coded.loc[coded[COMPARISON] == "group", "response_id"].nunique()
        for item in items:
            assert "response_id" not in item and "respondent_id" not in item
            assert item["quotes_attributable"] == (cell >= limit)
            for quote in item["quotes"]:
                # only group and country attached, and only from a cell of at least suppress_below
                assert set(quote) == {"quote", "group", "country", "language"}
                assert quote["group"] and quote["country"] == country and cell >= limit
    # no ids on the page or in the findings (the processed, salted ids)
    coded = pd.read_parquet(demo_processed / "demo_voices.parquet")
    blobs = [page, *(p.read_text(encoding="utf-8") for p in outputs.rglob("findings.json"))]
    ids = set(coded["response_id"].astype(str))
    assert not any(rid in blob for blob in blobs for rid in ids)


# --------------------------------------------------------------------------------------------
# The synthesis labels the theme shares (mentions_<theme>) as every indicator


def test_synthesis_labels_theme_share_rows_with_their_catalogue_labels(voices_front_page, demo_processed,
                                                                       tmp_path, monkeypatch):
    from openpyxl import load_workbook

    from analysis.chapters import synthesis
    from analysis.schema import load_themes
    from analysis.text import text

    outputs, _ = voices_front_page
    run, estimates = synthesis.start_synthesis("synthesis", all_estimates=outputs / "tables" / "all_estimates.csv",
                                               output_dir=tmp_path / "synthesis", processed_dir=demo_processed)
    table = synthesis.synthesis_table(run, estimates)
    assert table["indicator"].str.startswith("mentions_").any()
    display = synthesis.synthesis_display(run, synthesis.synthesis_comparisons(run, table))
    assert not display.apply(lambda c: c.astype(str).str.contains("mentions_")).any().any()
    themes = load_themes()
    column = text("synthesis.columns.indicator")
    expected = {text("voices.mentions_label", theme=label) for label in themes.values()}
    assert set(display[column]) <= expected and len(set(display[column])) >= 5
    # a share of respondents, shown as every percent indicator: "23% (19–27)", in its theme
    assert display[text("synthesis.columns.estimate")].str.match(r"^\d+% \(\d+–\d+\)$|^$").all()
    assert set(display[text("synthesis.columns.theme")]) <= set(themes.values())
    workbook = load_workbook(synthesis.write_synthesis_workbook(run, table), read_only=True)
    cells = [str(v) for sheet in workbook.worksheets for row in sheet.iter_rows(values_only=True) for v in row]
    assert not any("mentions_" in c for c in cells)
    # translated like every label: the French page says it in French
    monkeypatch.setenv("ANALYSIS_LANG", "fr")
    run, _ = synthesis.start_synthesis("synthesis", all_estimates=outputs / "tables" / "all_estimates.csv",
                                       output_dir=tmp_path / "fr", processed_dir=demo_processed)
    french = synthesis.synthesis_display(run, synthesis.synthesis_comparisons(run, table))
    assert text("voices.mentions_label", theme="X") != "Mentioned in coded open answers: X"
    assert set(french[text("synthesis.columns.indicator")]) <= {
        text("voices.mentions_label", theme=label) for label in themes.values()}


# --------------------------------------------------------------------------------------------
# Scrubbing cue words live in the catalogue (params/scrubbing.yml), per language


def test_scrubbing_cue_words_come_from_the_catalogue_per_language(tmp_path):
    import yaml

    from analysis.voices import scrub

    code = Path(scrub.__file__).read_text(encoding="utf-8")
    for word in ("my name is", "jina langu", "kijiji cha", "Mzee", "miaka", "janvier", "près de"):
        assert word not in code, f"cue word {word!r} is still in scrub.py"
    assert {"en", "fr", "sw"} <= set(scrub.load_cues().languages)
    # a language added to the catalogue is scrubbed without a code change
    custom = tmp_path / "scrubbing.yml"
    custom.write_text(yaml.safe_dump({"languages": {"pt": {
        "introductions": ["o meu nome é"], "titles": ["Sr"], "places": ["na aldeia de"], "ages_after": ["anos"]}}},
        allow_unicode=True), encoding="utf-8")
    scrubber = Scrubber(cues=scrub.load_cues(custom))
    out = scrubber("O meu nome é Joana Silva. Sr Tavares vive na aldeia de Mafalala, tenho 34 anos.")
    assert not re.search(r"Joana|Silva|Tavares|Mafalala|34", out), out
    assert scrubber.log() == {"age": 1, "name": 2, "place": 1}
    # months and weekdays of every language of the file (CLDR, through Babel) are not places
    assert Scrubber()("Shule zilifungwa katika Januari.") == "Shule zilifungwa katika Januari."
    assert Scrubber()("Tunaishi kijiji cha Kawangware.") == "Tunaishi kijiji cha [place]."
    # a mistake in the file is one line naming the file and the key
    custom.write_text(yaml.safe_dump({"languages": {"en": {"introduction": ["my name is"]}}}), encoding="utf-8")
    with pytest.raises(scrub.ScrubError, match=r"scrubbing\.yml: key 'languages\.en\.introduction'") as error:
        scrub.load_cues(custom)
    assert "\n" not in str(error.value)


def test_demo_sentence_bank_is_written_once_with_the_same_codes_in_every_language():
    from analysis import demo_voices
    from analysis.voices.codebook import load_codebook

    bank = json.loads(demo_voices.ANSWERS_FILE.read_text(encoding="utf-8"))
    book = load_codebook("demo_voices")
    codes = {k for k, c in book.codes.items() if c.theme or c.special == "no_theme"}
    assert set(bank["sentences"]) == set(demo_voices.AGE_PHRASE) == {"en", "fr", "sw"}
    for language, sentences in bank["sentences"].items():
        assert set(sentences) == codes | set(demo_voices.PLANT_RATES), language
        assert all(len(sentences[code]) == 2 for code in codes), language
        for kind in demo_voices.PLANT_RATES:  # the planted datum has its placeholder
            assert "{" + kind + "}" in sentences[kind], (language, kind)
    assert demo_voices.SENTENCES == bank["sentences"] and demo_voices.NOT_CODABLE == bank["not_codable"]


def test_front_page_names_the_coded_answers_as_such_not_as_official_statistics(voices_front_page):
    from analysis.text import text

    _, page = voices_front_page
    official = re.search(rf"<p>{re.escape(text('front.official_heading'))}:.*?</p>", page, flags=re.DOTALL)
    assert official is None or "Demo coded answers" not in official.group(0)
    coded = re.search(rf"<p>{re.escape(text('front.other_sources.coding'))}:(.*?)</p>", page, flags=re.DOTALL)
    assert coded and "Demo coded answers" in coded.group(1)


def test_front_page_voices_are_written_in_the_page_language(voices_front_page, demo_processed, monkeypatch):
    from analysis import i18n
    from analysis.pipeline.front_page import write_front_page
    from analysis.pipeline.matrix import load_report
    from analysis.text import text

    outputs, english = voices_front_page
    manifest = json.loads((outputs / "manifest.json").read_text(encoding="utf-8"))
    monkeypatch.setenv("ANALYSIS_LANG", "fr")
    ctx = load_report(config.REPORT_FILE, processed_dir=demo_processed, outputs_dir=outputs)
    page = write_front_page(manifest, ctx, path=outputs / "index.fr.html").read_text(encoding="utf-8")
    french = i18n.load_language("fr").strings
    assert f">{french['text.front.voices.heading']['text']}</h4>" in page
    assert 'id="voices-rules"' in page and text("front.voices.rules", per_theme=3, suppress_below=25,
                                                  threshold="0.667").split(":")[0] in page
    # the same numbers as the English page, in the same places
    attributes = re.compile(r'<li class="voice"([^>]*)>')
    assert attributes.findall(page) == attributes.findall(english)
    monkeypatch.setenv("ANALYSIS_LANG", "en")
    for fragment in ("respondents with a coded open answer", "agreement between coders"):
        assert fragment in english and fragment not in page


def test_front_page_voices_leave_out_stale_runs(voices_front_page, demo_processed):
    from analysis.pipeline.front_page import write_front_page
    from analysis.pipeline.matrix import load_report

    outputs, english = voices_front_page
    manifest = json.loads((outputs / "manifest.json").read_text(encoding="utf-8"))
    run_id = "voices/women/KEN"
    assert 'data-country="KEN" data-group="women"' in english
    # built from older inputs: kept out of all_estimates.csv, so out of the front page too
    manifest["runs"][run_id]["stale"] = "demo_youth changed since this run"
    ctx = load_report(config.REPORT_FILE, processed_dir=demo_processed, outputs_dir=outputs)
    page = write_front_page(manifest, ctx, path=outputs / "index.stale.html").read_text(encoding="utf-8")
    assert 'data-country="KEN" data-group="women"' not in page and 'class="voice"' in page


@pytest.mark.slow
def test_the_voices_notebook_publishes_the_front_page_voices(demo_processed, tmp_path):
    """The pipeline runs the Voices notebook (one country) and the front page it builds shows its
    findings: a Voices section for every coded theme, numbers equal to the cited rows."""
    import os

    from analysis.pipeline import cli as pipeline_cli
    from analysis.voices.codebook import load_codebook

    parser = argparse.ArgumentParser()
    pipeline_cli.add_arguments(parser)
    outputs = tmp_path / "outputs"
    code = pipeline_cli.main(parser.parse_args([
        "--config", str(config.REPORT_FILE), "--processed", str(demo_processed), "--outputs", str(outputs),
        "--chapter", "voices", "--country", "KEN", "--no-progress",
        "--workers", os.environ.get("TEST_REPORT_WORKERS", "2")]))
    assert code == 0
    page = (outputs / "index.html").read_text(encoding="utf-8")
    assert set(load_codebook("demo_voices").themes) <= set(_voices_sections(page))
    assert_voices_cite_their_rows(outputs, page)
    assert len(list(outputs.glob("voices/*/KEN/findings.json"))) == 3


def test_a_theme_whose_shares_fail_the_rules_says_why_and_a_theme_without_coded_data_has_no_voices():
    from types import SimpleNamespace

    from analysis.pipeline.front_page import _voices
    from analysis.text import text

    ctx = SimpleNamespace(group_labels={"women": "Women"}, country_names={"KEN": "Kenya"})
    base = {"kind": "voices", "theme": "education", "group": "women", "country": "KEN", "source": "coded",
            "survey": "survey", "href": "voices/women/KEN/voices.html", "quotes": []}
    items = [{**base, "shown": False, "reason": "flag", "estimate": None},
             {**base, "country": "UGA", "shown": False, "reason": "agreement", "estimate": 0.4, "ci_low": 0.3,
              "ci_high": 0.5, "n_unweighted": 300, "alpha": 0.5}]
    section = _voices("education", "Education", items, ctx, {})
    assert section["shares"] == []
    assert section["why"] == text("front.voices.none", total=2, flagged=1, tentative=1)
    assert _voices("food_insecurity", "Food insecurity", items, ctx, {}) is None
