"""One small file per aggregation algorithm; ``base`` holds the contract's types, ``registry`` the registry.

Importing a single algorithm never imports the others: the registry lives in its own module."""
