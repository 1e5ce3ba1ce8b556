"""The presentation layer: what people look at.

Notebook helpers (``notebook``), loading evidence for a notebook or a report (``session``), plotly charts
(``charts``), reports run through papermill (``reports``) and postmortem write-ups (``postmortem``). It uses the
analysis and data layers and is used only by the command line and the notebooks.
"""
