from kit.console import console  # noqa: F401  (the fixture)
