"""The data layer: getting provisioning evidence and keeping it.

Where and as whom to sign in (``settings``: clouds, ``PROVKIT_*`` settings, the HTTP session) and getting tokens
(``auth``), the Graph client's HTTP plumbing with its paging, retries and pacing (``graph_http``) and its reads
(``graph``), the sources evidence comes from (``sources``: Graph, Log Analytics, admin-centre and Log Analytics
files), the normalised tables and step details (``tables``, a package: schema, times, convert, events, rows,
arrow, jobs; ``stepdetails``), the local store (``store``, a package: disk, ranges, layout, reading, repair,
app), fetching into it (``fetch``) and importing
files (``importer``), the evidence bundle handed to the analysis (``evidence``), and the provisionOnDemand
answers (``ondemand``). It imports only the foundation (``provkit.errors``, ``provkit.window``).
"""
