"""The analysis layer: from evidence to answers.

Cycle reconstruction (``cycles``), the sync scope inferred from the logs (``syncscope``), trends across cycles
(``trends``) and the checks that turn evidence into findings with a remedy (``checks``). It reads
``provkit.data.evidence.Evidence`` and never fetches, prints or draws.
"""
