"""Entry file for ``streamlit run``: the page lives in :mod:`medllm.ui`."""

from medllm.ui import page

page()
