"""Sphinx configuration of the MoWE toolkit's documentation (``make docs``)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

project = "MoWE toolkit"
author = "The MoWE toolkit authors"
copyright = "2026, " + author
release = "0.1.0"

extensions = [
    "myst_parser",            # pages in MyST Markdown
    "sphinx.ext.autodoc",     # the API reference from the docstrings
    "sphinx.ext.napoleon",    # numpy-style docstrings
    "sphinx.ext.mathjax",     # the paper's equations
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]

napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections as :ivar: fields: dataclass fields are documented once, by autodoc
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
# the optional extras are imported inside functions; nothing to mock
nitpicky = False

html_theme = "alabaster"
html_title = "MoWE toolkit"
html_static_path = []
