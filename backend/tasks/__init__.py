"""Tasks: the durable unit of work clients submit and workers run."""
