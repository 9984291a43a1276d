"""Sphinx configuration of the fluidgrad documentation.

Build (from the repository root; warnings are errors, the tutorials run):

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
if (DOCS.parent / "src" / "fluidgrad").is_dir():  # a source checkout documents its own code
    sys.path.insert(0, str(DOCS.parent / "src"))
    # the tutorials' kernels import fluidgrad from the same place
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DOCS.parent / "src"),
                                                             os.environ.get("PYTHONPATH")]))

import fluidgrad  # noqa: E402

project = "fluidgrad"
author = "the fluidgrad authors"
copyright = "the fluidgrad authors, MIT licence"
version = release = fluidgrad.__version__

extensions = [
    "myst_nb",                   # Markdown pages and executed MyST notebooks (the tutorials)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "scenario_reference",        # the scenario reference from fluidgrad.scenario's validator
    "cli_reference",             # the CLI reference from fluidgrad.cli.build_parser()
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "jupyter_execute", "**/.ipynb_checkpoints"]
templates_path = []
smartquotes = False                  # "--set" and 'auto' in help texts stay as written

# -- MyST and the executed tutorials ---------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"          # re-run a tutorial when its code changes (CI: -D nb_execution_mode=force)
nb_execution_raise_on_error = True   # a failing cell fails the build
nb_execution_timeout = 240
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference ------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"           # signatures as written; the docstrings say the types
autosummary_generate = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# -- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fluidgrad {release}"
html_static_path = []
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
