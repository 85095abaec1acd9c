"""Fleet storage: one SQLAlchemy Core schema, SQLite by default and PostgreSQL by URL, behind small repositories."""
