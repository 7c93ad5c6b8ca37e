"""SQL for the API's resources; handlers call these inside their transactions."""
