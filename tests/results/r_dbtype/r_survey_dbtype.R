# R's database-backed designs equal the in-memory ones (issue 17): the check R's survey package
# itself makes (tests/DBIcheck.R), on the project's shared fixtures, with the values stored so
# that the partition-sum engines can be tested against them without R.
#
# Usage: Rscript tests/results/r_dbtype/r_survey_dbtype.R ../shared tests/results/r_dbtype/r_survey_dbtype.json
# Needs: survey, RSQLite, jsonlite.
suppressMessages({library(survey); library(RSQLite); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- args[1]
out <- args[2]
db <- tempfile(fileext = ".sqlite")
con <- dbConnect(SQLite(), db)
apiclus1 <- read.csv(file.path(shared, "data", "r-survey", "apiclus1.csv"))
apistrat <- read.csv(file.path(shared, "data", "r-survey", "apistrat.csv"))
reps <- read.csv(file.path(shared, "data", "fixtures", "replicate_weights.csv"))
dbWriteTable(con, "apiclus1", apiclus1)
dbWriteTable(con, "apistrat", apistrat)
dbWriteTable(con, "reps", reps)
dbDisconnect(con)

designs <- list(
  clus1 = list(
    call = "svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = ...)",
    memory = svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1),
    db = svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = "apiclus1",
                   dbtype = "SQLite", dbname = db)),
  strat = list(
    call = "svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = ...)",
    memory = svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat),
    db = svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = "apistrat",
                   dbtype = "SQLite", dbname = db)),
  sdr = list(
    call = "svrepdesign(weights = ~weight, repweights = 'repwt[0-9]+', type = 'successive-difference', mse = TRUE, data = ...)",
    memory = svrepdesign(weights = ~weight, repweights = "repwt[0-9]+",
                         type = "successive-difference", mse = TRUE, data = reps),
    db = svrepdesign(weights = ~weight, repweights = "repwt[0-9]+",
                     type = "successive-difference", mse = TRUE, data = "reps",
                     dbtype = "SQLite", dbname = db))
)
# (design, statistic, indicator, by): by = NA is the whole sample
cases <- list(
  list("clus1", "mean", "api00", NA), list("clus1", "mean", "api00", "stype"),
  list("clus1", "total", "enroll", "stype"),
  list("strat", "mean", "api00", NA), list("strat", "mean", "api99", "awards"),
  list("strat", "total", "enroll", "awards"),
  list("sdr", "mean", "food_insecure", NA), list("sdr", "mean", "food_insecure", "sex"),
  list("sdr", "total", "food_insecure", "disability")
)
one <- function(design, statistic, indicator, by) {
  f <- if (statistic == "mean") svymean else svytotal
  y <- as.formula(paste0("~", indicator))
  if (is.na(by)) {
    r <- f(y, design)
    return(list(cell = "all", estimate = as.numeric(coef(r)), se = as.numeric(SE(r))))
  }
  r <- svyby(y, as.formula(paste0("~", by)), design, f)
  list(cell = as.character(r[[by]]), estimate = as.numeric(coef(r)), se = as.numeric(SE(r)))
}
results <- list()
worst <- 0
for (case in cases) {
  d <- designs[[case[[1]]]]
  m <- one(d$memory, case[[2]], case[[3]], case[[4]])
  b <- one(d$db, case[[2]], case[[3]], case[[4]])
  stopifnot(identical(m$cell, b$cell))
  diff <- max(abs(c(m$estimate - b$estimate, m$se - b$se)) / pmax(abs(c(m$estimate, m$se)), 1e-300))
  worst <- max(worst, diff)
  results[[length(results) + 1]] <- list(
    design = case[[1]], design_call = d$call, statistic = case[[2]], indicator = case[[3]],
    by = case[[4]], cell = I(b$cell),
    estimate_db = I(b$estimate), se_db = I(b$se), estimate_memory = I(m$estimate),
    se_memory = I(m$se),
    max_relative_difference = diff)
}
doc <- list(
  about = paste("R's survey package: each design built in memory and from an SQLite table",
                "(dbtype = 'SQLite'); estimates and SEs of both, and their largest relative",
                "difference. Data: ../shared/data/r-survey (apiclus1, apistrat) and",
                "../shared/data/fixtures/replicate_weights.csv."),
  made_with = list(R = R.version.string, survey = as.character(packageVersion("survey")),
                   RSQLite = as.character(packageVersion("RSQLite"))),
  script = "tests/results/r_dbtype/r_survey_dbtype.R",
  max_relative_difference = worst,
  cases = results)
writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat(sprintf("db-backed vs in-memory: largest relative difference %g\n", worst))
