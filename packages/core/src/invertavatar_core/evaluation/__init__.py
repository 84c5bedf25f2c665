"""Evaluation: protocols of paper Sec. 4, metrics, reports, tables, plots and the sweep runner."""
