"""outputs/tables/all_estimates.csv: every run's tables stacked, each estimate once."""

from __future__ import annotations

import pandas as pd

from analysis import tables
from analysis.pipeline.manifest import build_all_estimates


def _rows(group: str, n: int = 3) -> pd.DataFrame:
    return tables.conform(pd.DataFrame({
        "source": ["s"] * n, "country": ["KEN"] * n, "group": [group] * n,
        "indicator": [f"i{k}" for k in range(n)], "breakdown": ["comparison"] * n, "cell": ["group"] * n,
        "estimate": [0.1 * (k + 1) for k in range(n)], "se": [0.01] * n, "ci_low": [0.05] * n,
        "ci_high": [0.5] * n, "n_unweighted": [100] * n, "n_weighted": [1000.0] * n, "flag": ["ok"] * n,
        "method": ["weighted mean"] * n}))


def test_an_estimate_saved_by_two_runs_is_collected_once(tmp_path):
    # the group profile and geography across countries both save a group's country estimates
    profile = tables.write_csv(_rows("women"), tmp_path / "group_profile/women/KEN/tables/group_estimates.csv")
    across = tables.write_csv(pd.concat([_rows("women"), _rows("older_people")]),
                              tmp_path / "geography_across_countries/women/all/tables/country_estimates.csv")
    manifest = {"runs": {
        "group_profile/women/KEN": {"status": "ok", "chapter": "group_profile",
                                    "outputs": {"tables": [str(profile.relative_to(tmp_path))]}},
        "geography_across_countries/women/all": {"status": "ok", "chapter": "geography_across_countries",
                                                 "outputs": {"tables": [str(across.relative_to(tmp_path))]}},
    }}
    target = build_all_estimates(manifest, tmp_path, downstream_chapters=set())
    collected = tables.read_csv(target)
    assert not collected.duplicated().any()
    assert len(collected) == 6  # 3 rows of women (saved twice) + 3 of older people
    assert manifest["all_estimates_build"]["duplicate_rows_dropped"] == 3
    assert manifest["all_estimates_build"]["rows"] == 6
