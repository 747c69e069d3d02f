"""Analysis of results: metrics, tables, reports, plots and published values. Imports no detector."""
