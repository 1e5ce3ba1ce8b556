"""The simulated tenant and the local Graph-compatible server that serves it."""
