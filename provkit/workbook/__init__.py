"""The presentation layer: what people look at. It uses the analysis and data layers and is used only by the
command line and the notebooks.

- ``notebook``: the notebooks' one import (``nb``): a :class:`~provkit.workbook.target.Target` from the
  parameters cell, loading, the app picker, and every helper below under one name;
- ``session``: loading one app's evidence for a notebook, a command or a report (``load_evidence``), the
  simulated tenant (``demo_tenant``, ``stop_demo_tenants``) and the fetch's progress bar (``FetchProgressBar``);
- ``target``: where evidence comes from and which tenant a call goes to (``Target``);
- ``display``, ``pickers``, ``views``, ``verdicts``: what notebook cells show, the pickers, tables and texts
  about the evidence, the stable verdict lines; ``actions``: the cells that reach beyond reading (thin wrappers
  over ``provkit.data.changes``);
- ``render`` and ``templates/``: HTML from autoescaped Jinja2 templates; ``catalog``: the notebooks' names;
- ``charts``: plotly figures; ``reports``, ``execute``, ``pages``: reports run through papermill (a warm
  kernel per worker) and their HTML pages and index; ``postmortem``: Markdown write-ups.
"""
