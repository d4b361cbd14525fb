"""The stand-in kaggle.api package (see kaggle_api_extended)."""
