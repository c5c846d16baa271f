"""Entry file for ``streamlit run``: the page lives in :mod:`medllm.serve.ui`."""

from medllm.serve.ui import page

page()
