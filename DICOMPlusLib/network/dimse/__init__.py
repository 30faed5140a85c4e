"""Our DIMSE stack over the DICOM Upper Layer, blocking and direct (no pynetdicom):

- :mod:`ul`: PDUs, association negotiation, the PDU stream with deadlines;
- :mod:`messages`: DIMSE messages (command sets, fragmentation into P-DATA);
- :mod:`status`: the one table of DIMSE status codes and their categories;
- :mod:`scu`: a client association (C-ECHO, C-STORE);
- :mod:`acceptor`: the listener's server side (C-ECHO, C-STORE);
- :mod:`qrscu`: Query/Retrieve as a client (C-FIND, C-GET, C-MOVE, C-CANCEL).

It exists because bulk C-STORE through it is several times faster than through pynetdicom
(docs/performance.md, "Why our own DIMSE stack"). The sample PACS's Q/R SCP (:mod:`..pacs`)
still uses pynetdicom.
"""
