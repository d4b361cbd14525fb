"""A stand-in for the `kaggle` package, for tests: put tests/fake_kaggle first on sys.path (or
PYTHONPATH) and `kaggle` serves files from $FAKE_KAGGLE_DIR instead of kaggle.com.

Like the real package, importing it authenticates at once and swallows the failure.
"""
from kaggle.api.kaggle_api_extended import KaggleApi

__version__ = "0.0.0+fake"

api = KaggleApi()
try:
    api.authenticate()
except (Exception, SystemExit):
    pass
