"""Alembic environment: the engine comes from ``Store.migrate`` (or ``-x url=...`` on the CLI)."""

from alembic import context
from sqlalchemy import create_engine

from hub.store.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///cxhub.db")
    engine = create_engine(url)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
