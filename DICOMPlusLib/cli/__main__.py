"""``python -m DICOMPlusLib.cli``: the ``dicomplus`` command (:mod:`~DICOMPlusLib.cli.entry`)."""

from DICOMPlusLib.cli.entry import run

if __name__ == "__main__":
    run()
