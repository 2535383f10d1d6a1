"""The scenarios, one module per path measured; `SCENARIOS` lists them in run order."""
