"""`python -m lsp --stdio` runs the same entry point as the `dgem-infill` console script."""

from lsp.main import main

main()
