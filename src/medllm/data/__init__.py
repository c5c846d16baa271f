"""Stage `medllm data`: simulated cases, loaders of user-brought sources, curation, the dataset and its index."""
