"""The readout: a report people read, made from the DICOM files QuantReport wrote (or any TID 1500 SR).

``gather`` reads SRs, their SEGs and source series back into plain data;
``keyimages`` draws each segment on its source image; ``longitudinal``
follows lesions across time points by Tracking UID; ``page`` renders the
self-contained HTML page and ``pdf`` prints it; ``dicomsc`` writes the key
images as DICOM Secondary Capture with a Key Object Selection; ``write``
ties them together and ``command`` is ``quantreport report``.  Nothing heavy
(matplotlib, jinja2, highdicom) is imported before it is used.
"""
