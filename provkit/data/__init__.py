"""The data layer: getting provisioning evidence and keeping it.

Sign-in (``auth``), the Graph client with its paging, retries and pacing (``graph``), the sources evidence comes
from (``sources``: Graph, Log Analytics, admin-centre and Log Analytics files), the normalised tables and step
details (``tables``, ``stepdetails``), the local store (``store``), fetching into it (``fetch``) and importing
files (``importer``), the evidence bundle handed to the analysis (``evidence``), and the provisionOnDemand
answers (``ondemand``). It imports only the foundation (``provkit.errors``, ``provkit.window``).
"""
