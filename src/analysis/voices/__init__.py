"""Voices: coded free-text answers — agreement between coders, theme shares, consented quotes.

- :mod:`analysis.voices.agreement`: Krippendorff's alpha (nominal, ordinal, interval, ratio,
  MASI for multi-label codings), Cohen's and Fleiss' kappa, percent agreement, bootstrap
  intervals over units, the list of disagreements to resolve;
- :mod:`analysis.voices.codebook`: codebooks in the catalogue (``params/codebooks/*.yml``);
- :mod:`analysis.voices.themes`: the consensus rule and design-based theme shares;
- :mod:`analysis.voices.quotes`: consented, scrubbed, balanced quotes.

The coded data are read by :mod:`analysis.sources.coding` (source cards with ``kind: coding``).
"""
