"""KaggleApi at the boundary imagerec uses, serving `<FAKE_KAGGLE_DIR>/<competition>/<file>` and
`<FAKE_KAGGLE_DIR>/<owner>__<name>/<file>`.

As the real API: a file stored only as `<file>.zip` arrives as that (Kaggle zips large files),
a whole dataset arrives as one `<name>.zip`, anything missing raises requests' HTTPError 404,
and authenticate() prints a help text and exits with status 1 when there are no credentials
(here: when FAKE_KAGGLE_NO_CREDENTIALS is set).
"""
import os
import shutil
import zipfile
from pathlib import Path

import requests

SITE = "https://www.kaggle.com/api/v1"


def _store() -> Path:
    return Path(os.environ["FAKE_KAGGLE_DIR"])


def _not_found(url: str):
    response = requests.Response()
    response.status_code, response.url = 404, url
    return requests.HTTPError(f"404 Client Error: Not Found for url: {url}", response=response)


def _serve(folder: str, file_name: str, path: str, url: str, quiet: bool) -> None:
    for name in (file_name, f"{file_name}.zip"):
        source = _store() / folder / name
        if source.is_file():
            dest = Path(path) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not quiet:
                print(f"Downloading {name} to {dest.parent}")
            shutil.copyfile(source, dest)
            return
    raise _not_found(url)


class KaggleApi:
    def authenticate(self) -> None:
        if os.environ.get("FAKE_KAGGLE_NO_CREDENTIALS"):
            print("Authentication required to call the Kaggle API.\n(a long help text)")
            exit(1)

    def competition_download_file(self, competition, file_name, path=None, force=False, quiet=False, unzip=False):
        url = f"{SITE}/competitions/data/download/{competition}/{file_name}"
        _serve(competition, file_name, path or ".", url, quiet)

    def dataset_download_file(self, dataset, file_name, path=None, force=False, quiet=True, licenses=[], unzip=False):
        url = f"{SITE}/datasets/download/{dataset}/{file_name}"
        _serve(dataset.replace("/", "__"), file_name, path or ".", url, quiet)
        return True

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False, licenses=[]):
        owner, name = dataset.split("/")[:2]
        source = _store() / f"{owner}__{name}"
        if not source.is_dir():
            raise _not_found(f"{SITE}/datasets/download/{dataset}")
        dest = Path(path or ".") / f"{name}.zip"
        if not quiet:
            print(f"Downloading {dest.name} to {dest.parent}")
        with zipfile.ZipFile(dest, "w") as zf:  # fixed dates: the same files give the same bytes
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                zf.writestr(zipfile.ZipInfo(file.relative_to(source).as_posix()), file.read_bytes())
        if unzip:
            with zipfile.ZipFile(dest) as zf:
                zf.extractall(dest.parent)
            dest.unlink()
