"""Recipe machinery: hyperparameter files with overrides, the job launcher, provenance."""
