"""The pipeline steps; each step is a subpackage with a ``run_<step>(workdir, ...)`` entry point."""
