"""`emoe-report`: the paper's tables, paired differences and plots from many results.json."""
