"""Post-processing filters, one rule per module, applied in order by `syntax.postprocess`."""
