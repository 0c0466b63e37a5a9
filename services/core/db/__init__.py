"""The database: models, the `Protected` column type, engines and migrations."""
