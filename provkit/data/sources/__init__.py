"""Sources of provisioning data: each turns what it reads into Graph-shaped provisioningObjectSummary records."""
