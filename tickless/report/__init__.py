"""Reports of result records: console tables (``console``), figures, the HTML report and
cyclictest-style histograms. Reads records only; runs nothing."""
