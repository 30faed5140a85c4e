"""The sample PACS started with one command (``dicomplus serve``): :mod:`serve` (listener plus
Query/Retrieve SCP over one database), :mod:`qrscp` (the Q/R SCP, pynetdicom), :mod:`qrscp_send`
(its C-GET/C-MOVE sub-operations), :mod:`pynetdicom_glue`, :mod:`pynetdicom_guard` (peers that
break the protocol) and :mod:`sample` (sample data)."""

#: The sample PACS's AE title and port, here rather than in :mod:`qrscp` so that the command line
#: shows them as defaults without importing the Q/R SCP (and its storing path) for every command.
SAMPLE_AE_TITLE = "DICOMPLUSPACS"
SAMPLE_PORT = 11113
