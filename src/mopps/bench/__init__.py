"""``mopps bench``: runs the testbed with every selector and seed, summarizes, writes files and plots."""
