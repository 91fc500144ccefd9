"""Using a trained model: the Python API, packages, the command line, servers, the web demo."""
