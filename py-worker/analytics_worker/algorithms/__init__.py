"""Algorithm modules; importing one registers its algorithms in analytics_worker.core.REGISTRY."""
