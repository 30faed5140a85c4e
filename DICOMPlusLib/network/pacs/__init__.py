"""The sample PACS started with one command (``dicomplus serve``): :mod:`serve` (listener plus
Query/Retrieve SCP over one database), :mod:`qrscp` (the Q/R SCP, pynetdicom), :mod:`qrscp_send`
(its C-GET/C-MOVE sub-operations), :mod:`pynetdicom_glue` and :mod:`sample` (sample data)."""
