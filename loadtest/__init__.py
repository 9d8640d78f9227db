"""Load generator and scenarios for the moderation service; see loadtest.generator (the
programmatic API: run_load, find_saturation) and loadtest.scenarios (`python -m loadtest`)."""
