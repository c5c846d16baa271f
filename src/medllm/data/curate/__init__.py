"""The curation pass over all records: normalise, scrub, filter, dedupe, decontaminate, split, mix, data card."""
