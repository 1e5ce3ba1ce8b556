"""The simulated tenant and the local Graph-compatible server that serves it.

The simulator stands apart from the product: the product never imports it (an import-linter contract checks
this) and reaches it only as the ``provkit.demo`` plugin (:mod:`provkit.sim.plugin`, through
:mod:`provkit.data.sources.demo`); tests, benchmarks and the ``emulator`` and ``demo`` commands import it directly.

- The tenant: ``tenant`` (Tenant: jobs, schemas, audits, controls), ``apps`` (an app's subjects and timeline),
  ``directory`` (users, groups, memberships), ``membership`` (joiners and leavers over
  simulated time), ``scenarios`` (one app per troubleshooting situation),
  ``history`` (cycles, quarantine, the timeline walk), ``stories`` (scheduled leavers and late managers),
  ``entries`` (provisioning log entries), ``schema`` (synchronization schemas), ``ids`` and ``timefmt``.
- The server: ``server`` (start and stop), ``routes`` (the Graph API), ``handler`` (HTTP, errors, throttle,
  faults), ``ondemand`` (provisionOnDemand answers), ``odata`` and ``odatasyntax`` ($filter, $orderby),
  ``logquery`` (provisioning log pages), ``authority``, ``clientauth`` and ``certs`` (sign-in), ``faults``,
  ``groupdelta`` (``/groups/delta``), ``loganalytics`` (a Log Analytics workspace over the same
  history; ``laschema`` its tables' columns and rows, ``laload`` its loader), ``fleet`` (several tenants and
  workspaces behind one server).
- Entry points: ``embedded`` (DemoTenant, in-process), ``plugin`` (what the product may ask), ``evidence``
  (Evidence straight from a tenant, for tests), ``cli`` (``provkit emulator``), ``tour`` (``provkit demo``).
"""
