"""The report's chapters: one module per chapter notebook (load → compute → save/show).

``notebooks/0N_<chapter>.ipynb`` calls ``analysis.chapters.<chapter>`` for its chapter's work and
:mod:`analysis.chapters.common` for the run, saving and showing. The names of every chapter module
are also available here (``chapters.group_estimates``), so ``from analysis import chapters`` is
enough in a notebook.
"""

from analysis.chapters.common import (  # noqa: F401
    COMPARISON,
    DEGENERATE_MARK,
    WG_DOMAINS,
    ChapterError,
    ChapterRun,
    category_labels,
    country_name,
    display_table,
    estimate_indicators,
    flag_degenerate_intervals,
    percent_view,
    population_margins,
    protect,
    resolve_output_dir,
    run_folder,
    run_title,
    save_table,
    show_figures,
    show_frame,
    show_table,
    show_text,
    start_run,
)
from analysis.chapters.data_profile import (  # noqa: F401
    composition,
    composition_all,
    composition_vs_margins,
    data_profile_figures,
    in_catalogue_order,
    profile_tables,
    row_accounting,
)
from analysis.chapters.geography import (  # noqa: F401
    admin1_estimates,
    admin1_gaps,
    admin1_maps,
    country_estimates,
    country_maps,
    estimates_and_maps,
    geography_summary,
    load_boundaries,
)
from analysis.chapters.group_profile import (  # noqa: F401
    figure_gaps,
    figure_group_profile,
    gap_differences,
    group_estimates,
    group_gaps,
    group_profile_figures,
    profile_summary,
    with_comparison,
)
from analysis.chapters.intersections import (  # noqa: F401
    MAIHDA_INDICATORS,
    excess_disparity_table,
    intersection_estimates,
    intersection_heatmaps,
    intersection_measures,
    intersections_summary,
    maihda_summary,
    show_excess_disparity,
    show_maihda,
    smallest_cell_counts,
)
from analysis.chapters.official_statistics import (  # noqa: F401
    cdc_deaths_table,
    cdc_period_note,
    comparison_figure,
    data_gap_matrix,
    official_comparison,
    official_sources,
    read_cdc_deaths,
    weighting_effect,
    weighting_figure,
)
from analysis.chapters.synthesis import (  # noqa: F401
    show_synthesis,
    show_workbook_link,
    start_synthesis,
    synthesis_comparisons,
    synthesis_display,
    synthesis_figures,
    synthesis_summary,
    synthesis_table,
    write_synthesis_workbook,
)
