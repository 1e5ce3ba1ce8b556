"""The analysis layer: from evidence to answers.

Cycle reconstruction (``cycles``: a package, one module per job: rules, context, observed, reconstruct, eta, state,
summaries), the sync scope inferred from the logs (``syncscope``), trends across cycles (``trends``), the checks
that turn evidence into findings with a remedy (``checks``), and lean column reads shared by analyses that scan
every entry (``columns``). It reads ``provkit.data.evidence.Evidence`` and never fetches, prints or draws; of the
steps table it reads only the steps of the entries it explains (``Evidence.steps_of``).
"""
