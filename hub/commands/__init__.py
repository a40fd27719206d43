"""``cxhub`` sub-commands by feature. Each module has ``register(app)``; ``cli.py`` lists them."""
