"""DICOMweb as a client: :mod:`client` (QIDO-RS, WADO-RS, STOW-RS over urllib, DICOM JSON),
:mod:`qido` (query-string encoding), :mod:`response` (bounded reading of responses, multipart)."""
