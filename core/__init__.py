"""ST-MANet core: model, data, training, evaluation. Never imports `app/`."""
