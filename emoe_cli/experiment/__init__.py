"""One experiment, above every layer it uses: the recipe's named steps, the method's conversion,
the output-folder check, and the wrapper that turns what ends a run into its record."""
