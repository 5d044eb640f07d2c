"""The applications: the ``fastembed`` command line and the demo."""
