"""The compile pipeline: export -> quantize -> evaluate/gate -> build -> bundle."""
